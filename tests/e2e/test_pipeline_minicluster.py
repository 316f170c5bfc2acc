"""Replay -> real Kafka broker -> the PyFlink job in a local MiniCluster -> chDB, asserted exactly."""
import os

import pytest

from tests.e2e import planted
from tests.e2e.checks import assert_store_holds_exactly, stored
from tests.e2e.conftest import BOOTSTRAP, read_report, run_python, stack_env, unique

pytestmark = pytest.mark.e2e


def test_bounded_job_stores_every_trade_once_every_bad_message_as_dead_letter_and_detects_the_spikes(
        kafka_broker, trained_model, tmp_path):
    from flink_jobs.detectors.iforest import OnnxIsolationForest
    model = OnnxIsolationForest.from_registry(trained_model)
    expected = planted.build(str(tmp_path / "planted.jsonl"), model)
    topic, chdb_path = unique("e2e-mini"), str(tmp_path / "chdb")
    env = stack_env(KAFKA_BOOTSTRAP_SERVERS=BOOTSTRAP, KAFKA_TOPIC=topic, CHDB_PATH=chdb_path,
                    SINK_BATCH_SIZE=700, IFOREST_BATCH_SIZE=64,
                    MODEL_REGISTRY=os.path.dirname(os.path.dirname(trained_model.onnx_path)), **planted.JOB_ENV)
    replay = run_python(["-m", "producer", "replay", str(tmp_path / "planted.jsonl"), "--create-topic"], env)
    assert "failed 0" in replay.stderr

    report_path = str(tmp_path / "run.json")
    run_python(["flink_jobs/anomaly_job.py", "--bounded", "--group-id", unique("g"),
                "--run-report", report_path], env)
    first = stored(chdb_path)
    assert_store_holds_exactly(first, expected, trained_model.version)
    assert read_report(report_path)["net_runtime_seconds"] > 0

    # The same input again, from the start, into the same store: nothing is duplicated.
    run_python(["flink_jobs/anomaly_job.py", "--bounded", "--group-id", unique("g")], env)
    second = stored(chdb_path)
    assert second["raw_trade_rows"] >= first["unique_trades"]  # the rows were written again...
    assert_store_holds_exactly(second, expected, trained_model.version)               # ...and still count once each


def test_job_refuses_bad_configuration_before_starting(tmp_path):
    result = __import__("subprocess").run(
        [__import__("sys").executable, "flink_jobs/anomaly_job.py", "--bounded"],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        env=stack_env(ROLLING_WINDOW="1"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "ROLLING_WINDOW='1'" in result.stderr or "ROLLING_WINDOW=1" in result.stderr
