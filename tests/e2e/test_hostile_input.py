"""The hostile corpus mixed into real traffic -> the real Kafka broker -> the job in a MiniCluster -> chDB.

The job must finish (a bounded run), and the store must hold exactly what tests/hostile.py says:
every real or hostile-but-valid trade once by (symbol, trade id), every bad message as a dead
letter of the expected stage and reason kind (parse-stage ones found by their raw text, the
megabyte ones cut as operators.dead_letter cuts them), and nothing else."""
import collections
import os
import time

import pytest
from kafka import KafkaProducer

import config
from flink_jobs.store import open_store
from flink_jobs.trades import MAX_DEAD_LETTER_CHARS, dead_letter_raw, reason_kind
from producer.kafka_settings import producer_settings
from producer.publisher import create_topic
from tests import hostile
from tests.e2e.conftest import BOOTSTRAP, read_report, run_python, stack_env, unique

pytestmark = pytest.mark.e2e


def produce(cfg: config.AppConfig, mix: hostile.Mixed) -> int:
    """Each partition's messages in order (one symbol's trades per partition), and one record with
    no value at all (a tombstone) first; every send acknowledged."""
    producer = KafkaProducer(**producer_settings(cfg.kafka, "hostile-test"))
    futures = [producer.send(cfg.kafka.topic, key=b"ETHUSDT", value=None, partition=0)]
    for partition, messages in enumerate(mix.partitions):
        futures += [producer.send(cfg.kafka.topic, key=key, value=value, partition=partition)
                    for key, value in messages]
    producer.flush(timeout=120)
    for future in futures:
        future.get(timeout=60)
    producer.close()
    return len(futures)


def stored(chdb_path: str) -> dict:
    with open_store(config.load({"CHDB_PATH": chdb_path}).store) as store:
        return {
            "trades": {(r["symbol"], r["trade_id"]): (r["price"], r["qty"], r["t"]) for r in store.query(
                "SELECT symbol, trade_id, price, qty, toUnixTimestamp64Milli(trade_time) AS t FROM trades FINAL")},
            "trade_rows": store.scalar("SELECT count() FROM trades"),
            "dead_letters": store.query("SELECT stage, reason, raw, symbol, trade_id FROM dead_letters FINAL"),
            "dead_letter_rows": store.scalar("SELECT count() FROM dead_letters"),
            "bar_counts": {(r["symbol"], r["start"]): r["n"] for r in store.query(
                "SELECT symbol, toUnixTimestamp64Milli(window_start) AS start, trade_count AS n "
                "FROM bars FINAL WHERE interval_s = 60")},
        }


def test_the_job_survives_the_hostile_corpus_in_real_traffic_and_accounts_for_every_message(
        kafka_broker, trained_model, tmp_path):
    corpus = hostile.corpus()
    mix = hostile.mixed(hostile.real_traffic(), corpus)
    chdb_path = str(tmp_path / "chdb")
    env = stack_env(KAFKA_BOOTSTRAP_SERVERS=BOOTSTRAP, KAFKA_TOPIC=unique("e2e-hostile"), CHDB_PATH=chdb_path,
                    SYMBOLS="ETHUSDT,XRPETH", ZSCORE_THRESHOLDS="ETHUSDT=3.5,XRPETH=4.0",
                    MODEL_REGISTRY=os.path.dirname(os.path.dirname(trained_model.onnx_path)),
                    WATERMARK_IDLE_TIMEOUT_MS=0)   # no partition stops holding the watermark back
    cfg = config.load(env)
    create_topic(cfg.kafka)
    started = time.monotonic()
    records = produce(cfg, mix)
    produced_s = time.monotonic() - started

    report_path = str(tmp_path / "run.json")
    run_python(["flink_jobs/anomaly_job.py", "--bounded", "--group-id", unique("g"), "--run-report", report_path], env)
    report = read_report(report_path)
    result = stored(chdb_path)

    # Every good trade exactly once, with the values it was sent with; nothing else.
    assert result["trades"] == {key: pytest.approx(value) for key, value in mix.trades.items()}
    assert result["trade_rows"] == len(mix.trades)

    # A trade a day older than the others is late only if a watermark had passed its window when
    # it arrived. Watermarks are periodic (processing time), so a fast run may reach it before
    # any: then the trade is in its 1-minute bar instead. Either way it is accounted for.
    rows = result["dead_letters"]
    late_dead = {(r["symbol"], r["trade_id"]) for r in rows if r["stage"] == "bars"}
    not_late = [item for item in mix.dead_letters if item.stage == "bars" and (item.symbol, item.trade_id) not in late_dead]
    for item in not_late:
        trade_time = mix.trades[(item.symbol, item.trade_id)][2]
        assert result["bar_counts"].get((item.symbol, trade_time - trade_time % 60_000), 0) >= 1, item
    expected = [item for item in mix.dead_letters if item not in not_late]

    # Every bad message a dead letter of its stage and reason kind; nothing else.
    assert result["dead_letter_rows"] == len(rows) == len(expected), collections.Counter(
        (r["stage"], reason_kind(r["reason"])) for r in rows)
    parse_rows = {r["raw"]: r for r in rows if r["stage"] == "parse"}
    other_rows = collections.Counter((r["stage"], reason_kind(r["reason"]), r["symbol"], r["trade_id"])
                                     for r in rows if r["stage"] != "parse")
    missing, wrong, cut = [], [], 0
    for item in expected:
        if item.stage != "parse":
            if other_rows[(item.stage, item.reason, item.symbol, item.trade_id)] != 1:
                missing.append((item.kind, item.stage, item.symbol, item.trade_id))
            continue
        kept, _ = dead_letter_raw(item.raw, "")
        row = parse_rows.get(kept)
        if row is None:
            missing.append((item.kind, item.raw[:60]))
        elif reason_kind(row["reason"]) != item.reason:
            wrong.append((item.kind, row["reason"][:100], item.reason))
        elif len(item.raw) > MAX_DEAD_LETTER_CHARS:
            decoded = len(item.raw.decode("utf-8", errors="backslashreplace"))
            assert len(row["raw"]) == MAX_DEAD_LETTER_CHARS
            assert row["reason"].endswith(f"[raw message cut from {decoded} to {MAX_DEAD_LETTER_CHARS} characters]")
            cut += 1
    assert not missing and not wrong, f"missing {len(missing)}: {missing[:5]}; wrong reason {len(wrong)}: {wrong[:5]}"
    assert cut == sum(len(h.raw) > MAX_DEAD_LETTER_CHARS for h in corpus) >= 7

    kinds = collections.Counter(h.kind for h in mix.messages)
    print(f"\nhostile e2e: {records} records produced in {produced_s:.1f} s ({len(mix.messages)} hostile: "
          f"{dict(kinds)}); job {report['wall_seconds']:.1f} s wall, {report['net_runtime_seconds']:.1f} s net; "
          f"stored {len(result['trades'])} trades, {len(rows)} dead letters, {len(not_late)} day-old trades "
          f"before any watermark "
          f"({dict(collections.Counter(r['stage'] for r in rows))}), {cut} cut")
