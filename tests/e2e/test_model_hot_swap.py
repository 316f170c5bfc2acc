"""A new model published while the job runs is picked up without a restart; every trade after the
swap is scored by it, and nothing is lost or duplicated."""
import signal
import subprocess
import sys
import time

import pytest

from flink_jobs.detectors.iforest import OnnxIsolationForest
from flink_jobs.trades import InvalidTrade, parse_trade
from models import registry

from tests.conftest import PROJECT_DIR
from tests.e2e import planted
from tests.e2e.checks import stored
from tests.e2e.conftest import BOOTSTRAP, run_python, stack_env, unique, wait_until_consumed

pytestmark = pytest.mark.e2e


def test_job_swaps_to_a_newly_published_model_mid_stream(kafka_broker, trained_model, tmp_path):
    registry_dir = str(tmp_path / "registry")
    first = registry.publish(registry_dir, open(trained_model.onnx_path, "rb").read(),
                             trained_model.metadata, version="20260101T000000Z")
    model = OnnxIsolationForest.from_registry(first)
    expected = planted.build(str(tmp_path / "planted.jsonl"), model)
    lines = open(tmp_path / "planted.jsonl", encoding="utf-8").read().splitlines()
    half = len(lines) // 2
    (tmp_path / "part1.jsonl").write_text("\n".join(lines[:half]) + "\n")
    (tmp_path / "part2.jsonl").write_text("\n".join(lines[half:]) + "\n")
    part1_ids = set()
    for line in lines[:half]:
        try:
            trade = parse_trade(line, lambda s: True)
        except InvalidTrade:
            continue
        part1_ids.add((trade.symbol, trade.trade_id))

    topic, group, chdb_path = unique("e2e-swap"), unique("g"), str(tmp_path / "chdb")
    env = stack_env(KAFKA_BOOTSTRAP_SERVERS=BOOTSTRAP, KAFKA_TOPIC=topic, KAFKA_GROUP_ID=group, CHDB_PATH=chdb_path,
                    MODEL_REGISTRY=registry_dir, MODEL_POLL_SECONDS=0.5, CHECKPOINT_INTERVAL_MS=1000,
                    SINK_FLUSH_INTERVAL_MS=200, IFOREST_BATCH_SIZE=64, **planted.JOB_ENV)
    run_python(["-m", "producer", "replay", str(tmp_path / "part1.jsonl"), "--create-topic"], env)
    job = subprocess.Popen([sys.executable, "flink_jobs/anomaly_job.py"], cwd=PROJECT_DIR, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = ""
    try:
        wait_until_consumed(topic, group)
        second = registry.publish(registry_dir, open(first.onnx_path, "rb").read(), trained_model.metadata,
                                  version="20260102T000000Z")
        time.sleep(1.0)  # longer than the poll interval: the next micro-batch sees the new LATEST
        run_python(["-m", "producer", "replay", str(tmp_path / "part2.jsonl")], env)
        wait_until_consumed(topic, group)
        time.sleep(3.0)  # the last rows leave the sink's buffer within its flush interval
    except AssertionError as error:
        job.kill()
        raise AssertionError(f"{error}\njob output:\n{job.communicate()[0][-6000:]}") from None
    finally:
        if job.poll() is None:
            job.send_signal(signal.SIGTERM)
        try:
            output, _ = job.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            job.kill()
            output, _ = job.communicate()
    time.sleep(2.0)  # the Python workers release the store as they exit

    result = stored(chdb_path)
    assert result["trades"] == expected.trades, output[-3000:]
    assert result["unique_trades"] == sum(expected.trades.values())
    assert result["anomalies"] == expected.anomalies
    from config import load
    from flink_jobs.store import open_store
    with open_store(load({"CHDB_PATH": chdb_path}).store) as store:
        versions = store.query("SELECT symbol, trade_id, model_version FROM anomalies FINAL")
    assert versions
    for row in versions:
        want = first.version if (row["symbol"], row["trade_id"]) in part1_ids else second.version
        assert row["model_version"] == want, row
    assert {r["model_version"] for r in versions} == {first.version, second.version}
