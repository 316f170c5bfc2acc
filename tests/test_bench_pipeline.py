"""The performance benchmark's own logic: what it sends, how it names processes, where it writes.
(The numbers themselves come from running bench/pipeline.py, never from a unit test.)"""
import json
import time

import pytest

from bench import load
from bench.monitor import role_of
from bench.pipeline import MARK_BEGIN, MARK_END, SOAK_BEGIN, SOAK_END, write_section
from flink_jobs.trades import parse_message, parse_trade


class RecordingProducer:
    def __init__(self):
        self.sent = []

    def send(self, topic, key, value):
        self.sent.append((topic, key, value))

    def flush(self):
        pass


def test_paced_run_sends_the_rate_with_consecutive_ids_per_symbol_and_send_time_stamps():
    market = load.Market(load.symbol_names(3), seed=1)
    run = load.PacedRun(market, rate=1000, seconds=0.5, first_id=500, spike_every_s=0.2)
    producer = RecordingProducer()
    run.run(producer, "t")

    assert run.sent == len(producer.sent) == 500
    trades = [parse_trade(value, lambda s: True) for _, _, value in producer.sent]
    assert [key.decode() for _, key, _ in producer.sent] == [t.symbol for t in trades]
    for symbol in load.symbol_names(3):
        ids = [t.trade_id for t in trades if t.symbol == symbol]
        assert ids == list(range(500, 500 + len(ids)))
    stamps = [t.event_time_ms for t in trades]
    assert stamps == sorted(stamps) and all(t.trade_time_ms == t.event_time_ms for t in trades)
    assert stamps[-1] - stamps[0] >= 400  # paced over the half second, not sent at once
    assert 1 <= len(run.planted) <= 3
    by_key = {(t.symbol, t.trade_id): t for t in trades}
    for symbol, trade_id in run.planted:
        before = by_key.get((symbol, trade_id - 1))
        if before:
            assert abs(by_key[(symbol, trade_id)].price / before.price - 1) > 0.02


def test_a_second_run_continues_the_market_prices_with_its_own_ids():
    market = load.Market(load.symbol_names(2), seed=1)
    first, second = RecordingProducer(), RecordingProducer()
    load.PacedRun(market, 200, 0.1, first_id=1, spike_every_s=60).run(first, "t")
    load.PacedRun(market, 200, 0.1, first_id=1000, spike_every_s=60).run(second, "t")
    last = json.loads(first.sent[-2][2]), json.loads(first.sent[-1][2])
    nxt = {m["s"]: m for m in (json.loads(v) for _, _, v in second.sent[:2])}
    for message in last:
        assert nxt[message["s"]]["t"] == 1000
        assert abs(float(nxt[message["s"]]["p"]) / float(message["p"]) - 1) < 0.01


class TimedProducer(RecordingProducer):
    def send(self, topic, key, value):
        self.sent.append((topic, key, value, round(time.time() * 1000)))


def test_a_batched_paced_run_sends_a_symbol_s_trades_of_a_tick_as_one_message_a_tick_later(monkeypatch):
    clock = {"now": 1_700_000_000.0}    # seconds; the run's sleeps move it, nothing else does
    monkeypatch.setattr("bench.load.time.monotonic", lambda: clock["now"])
    monkeypatch.setattr("bench.load.time.time", lambda: clock["now"])
    monkeypatch.setattr("bench.load.time.sleep", lambda seconds: clock.__setitem__("now", clock["now"] + seconds))
    market = load.Market(load.symbol_names(2), seed=1)
    run = load.PacedRun(market, rate=2000, seconds=0.2, first_id=1, spike_every_s=60, message_trades=200)
    producer = TimedProducer()
    run.run(producer, "t")

    batches = [(key.decode(), parse_message(value, lambda s: True), at) for _, key, value, at in producer.sent]
    assert sum(len(trades) for _, trades, _ in batches) == run.sent == 400
    assert len(batches) == 40    # 20 ticks of 20 trades, 10 of each symbol
    assert all(len(trades) == 10 and {t.symbol for t in trades} == {key} for key, trades, _ in batches)
    # held for the producer's linger: sent at the next tick, 10 ms after they were made
    assert {at - trades[0].event_time_ms for _, trades, at in batches} == {10}
    capped = TimedProducer()
    load.PacedRun(market, rate=2000, seconds=0.1, first_id=1000, spike_every_s=60, message_trades=4).run(capped, "t")
    assert {len(parse_message(value, lambda s: True)) for _, _, value, _ in capped.sent} == {2, 4}
    for symbol in load.symbol_names(2):
        ids = [t.trade_id for key, trades, _ in batches if key == symbol for t in trades]
        assert ids == list(range(1, 201))


def test_bulk_sending_groups_each_symbol_s_consecutive_trades_up_to_the_count():
    producer = RecordingProducer()
    trades = list(load.bulk_trades(load.symbol_names(3), 1000, 1_700_000_000_000))
    sent, _ = load.send_bulk(producer, "t", iter(trades), per_message=150)

    assert sent == 1000
    batches = [(key.decode(), parse_message(value, lambda s: True)) for _, key, value in producer.sent]
    assert sorted(len(b) for _, b in batches) == [33, 33, 34, 150, 150, 150, 150, 150, 150]
    for symbol in load.symbol_names(3):
        assert [t for key, b in batches if key == symbol for t in b] == [t for t in trades if t.symbol == symbol]


@pytest.mark.parametrize("rate, symbols, linger, most, expected", [
    (100_000, 5, 10, 200, 200), (100_000, 5, 10, 100, 100), (100_000, 2000, 10, 200, 1), (5_000, 5, 10, 200, 10),
    (100_000, 5, 0, 200, 1)])
def test_trades_per_message_are_those_of_a_linger_window(rate, symbols, linger, most, expected):
    assert load.trades_per_message(rate, symbols, linger, most) == expected


def test_processes_are_told_apart_by_what_they_run_and_only_the_projects_count():
    root = "/srv/detector"
    assert role_of(["java", "-cp", f"{root}/.run/lib/kafka/*", "kafka.Kafka", "x"], (root,)) == "kafka broker"
    assert role_of(["java", f"-Dlog.file={root}/.run/flink/log/x", "org.apache.flink.runtime.taskexecutor."
                    "TaskManagerRunner"], (root,)) == "flink taskmanager"
    assert role_of([f"{root}/.venv/bin/python", "-m", "pyflink.fn_execution.beam.beam_boot", "--id=1-1"],
                   (root,)) == "python workers"
    assert role_of(["java", "kafka.Kafka", "/elsewhere/server.properties"], (root,)) is None
    assert role_of([f"{root}/.venv/bin/python", "-m", "pytest"], (root,)) is None


def test_results_replace_the_section_between_the_markers_and_keep_the_rest(tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Performance\n\nintro\n\n{MARK_BEGIN}\nold numbers\n{MARK_END}\n\n## Analysis\nkept\n")
    write_section(str(doc), f"{MARK_BEGIN}\nnew numbers\n{MARK_END}")
    text = doc.read_text()
    assert "new numbers" in text and "old numbers" not in text
    assert text.startswith("# Performance\n\nintro\n") and text.endswith("## Analysis\nkept\n")


def test_a_soak_run_writes_its_own_section_and_leaves_the_results_alone(tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text(f"{MARK_BEGIN}\nthroughput\n{MARK_END}\n\n## Soak\n\n{SOAK_BEGIN}\nold soak\n{SOAK_END}\n")
    write_section(str(doc), f"{SOAK_BEGIN}\nnew soak\n{SOAK_END}")
    text = doc.read_text()
    assert "throughput" in text and "new soak" in text and "old soak" not in text



def test_a_latency_run_with_no_measured_rows_shows_dashes_not_nan():
    from bench.pipeline import markdown

    usage = {"peak_rss_mb": {}, "cpu_s": {}}
    row = {"rate": 20_000, "achieved_rate": 17_592, "stored": 161_984, "sent": 1_500_000, "p50_ms": float("nan"),
           "p95_ms": float("nan"), "p99_ms": float("nan"), "max_ms": 0, "measured_rows": 0, "settle_s": 45,
           "settling_max_ms": 88_219,
           "planted_detected": 0, "planted": 9, "anomaly_p50_ms": None, "anomaly_max_ms": None, "usage": usage}
    measured = dict(row, rate=1_000, measured_rows=45_000, p50_ms=362.0, p95_ms=529.0, p99_ms=611.4, max_ms=718,
                    settling_max_ms=1_973)
    text = markdown({"machine": {"cores": 2, "cpu": "x", "memory_gb": 1, "python": "3", "date": "d",
                                 "load_average_at_start": 0}, "latency": [measured, row]}, "cmd")
    lines = [line for line in text.splitlines() if line.startswith("| 1,000/s") or line.startswith("| 20,000/s")]
    assert "| 362 | 529 | **611** | 718 | 1,973 |" in lines[0]
    assert "| - | - | **-** | - | 88,219 |" in lines[1] and "nan" not in text
    # the latency job's parallelism (its own setting, not the throughput runs') is stated with the table
    assert "unbounded job, paced input; percentiles over the trades sent after the first 45 s" in text
    at_one = markdown({"machine": {"cores": 2, "cpu": "x", "memory_gb": 1, "python": "3", "date": "d",
                                   "load_average_at_start": 0}, "latency": [dict(measured, parallelism=1)]}, "cmd")
    assert "(unbounded job at parallelism 1, paced input;" in at_one


def test_the_steady_rate_leaves_out_a_slow_start(tmp_path):
    """100 rows over a 30-second start, then 900 at 100 per second: the steady rate is the 100/s,
    where the whole run's rate is about 26/s."""
    import config
    from bench.pipeline import steady_rate
    from flink_jobs.store import open_store

    path = str(tmp_path / "chdb")
    cfg = config.load({}, store={"chdb_path": path, "clickhouse_url": ""})
    with open_store(cfg.store) as store:
        store.apply_schema()
        start = 1_700_000_000_000
        store.command(f"INSERT INTO trades (symbol, trade_id, ingested_at) SELECT 'BTCUSDT', number, "
                      f"fromUnixTimestamp64Milli(toInt64({start} + number * 300)) FROM numbers(100)")
        store.command(f"INSERT INTO trades (symbol, trade_id, ingested_at) SELECT 'BTCUSDT', 100 + number, "
                      f"fromUnixTimestamp64Milli(toInt64({start + 30_000} + number * 10)) FROM numbers(900)")
    assert steady_rate(path) == pytest.approx(100.0, rel=0.02)


def test_no_steady_rate_from_rows_all_stored_at_once(tmp_path):
    import config
    from bench.pipeline import steady_rate
    from flink_jobs.store import open_store

    path = str(tmp_path / "chdb")
    cfg = config.load({}, store={"chdb_path": path, "clickhouse_url": ""})
    with open_store(cfg.store) as store:
        store.apply_schema()
        store.command("INSERT INTO trades (symbol, trade_id, ingested_at) SELECT 'BTCUSDT', number, "
                      "fromUnixTimestamp64Milli(toInt64(1700000030000)) FROM numbers(100)")
    assert steady_rate(path) is None


def test_a_floor_run_says_so_above_each_of_its_tables():
    """The floor job's numbers (bench/floor_job.py, no detection) must never read as the job's."""
    from bench.pipeline import markdown

    usage = {"peak_rss_mb": {}, "cpu_s": {}}
    machine = {"cores": 2, "cpu": "x", "memory_gb": 1, "python": "3", "date": "d", "load_average_at_start": 0}
    throughput = {"trades": 1_000, "symbols": 5, "partitions": 2, "parallelism": 2, "net_runtime_s": 1.0,
                  "trades_per_s": 1_000, "stored_distinct": 1_000, "usage": usage}
    latency = {"rate": 1_000, "achieved_rate": 1_000, "stored": 10, "sent": 10, "p50_ms": 1.0, "p95_ms": 2.0,
               "p99_ms": 3.0, "max_ms": 4, "measured_rows": 10, "settle_s": 0, "settling_max_ms": 5, "planted": 0,
               "planted_detected": 0, "anomaly_p50_ms": None, "anomaly_max_ms": None, "usage": usage,
               "parallelism": 1}
    results = {"machine": machine, "throughput": [throughput], "latency": [latency]}
    floor = markdown(dict(results, args={"floor": True}), "cmd")
    job = markdown(dict(results, args={"floor": False}), "cmd")
    assert "the floor job, no detection** (bench/floor_job.py); chDB store" in floor
    assert "(the floor job, no detection, unbounded job at parallelism 1," in floor
    assert "floor" not in job and "all three methods with ONNX" in job
    one_stage = markdown(dict(results, args={"floor": True, "floor_stages": 1}), "cmd")
    assert "(the floor job, no detection, one Python stage, unbounded job at parallelism 1," in one_stage
