"""The full pipeline's performance on this machine, in one command: throughput, latency, memory,
and the earlier single-process design on the same input.

    python -m bench.pipeline                      # everything below, about 15 minutes on 2 cores
    python -m bench.pipeline --trades 200000 --rates 1000 --rate-seconds 20 --skip-baseline  # quick look
    python -m bench.pipeline --soak-minutes 30    # memory over 30 minutes at 5,000 trades/s
    python -m bench.pipeline --floor              # the same with the detection taken out (bench/floor_job.py)

Real parts only, started by the project's scripts in their own run directory (.run/bench) and
ports: the Apache Kafka broker (deploy/local/kafka.sh) and a standalone Flink cluster
(deploy/local/flink-cluster.sh), the job submitted with `flink run` as users run it, all
detection methods with the ONNX model, into the embedded chDB store.

1. Throughput: N trades (default 1,000,000) over S symbols are in the topic before the job
   starts, in messages as the producers write them: a symbol's trades of one linger window
   (KAFKA_MESSAGE_LINGER_MS) per message, at most KAFKA_MESSAGE_TRADES, the window's trades
   counted at --producer-rate (the 100,000 trades/s target) spread over the S symbols;
   --message-trades 1 sends one trade per message. The job runs bounded to the end offsets. trades/s = N / the job's net runtime, and
   the store must hold exactly N distinct trades. Repeated with --symbols-wide (2,000) symbols.
2. Latency: an unbounded job; trades are sent at fixed rates (1,000, 5,000, 20,000/s) in 10 ms
   ticks, a symbol's trades of a tick in one message at the next tick (unless --message-trades
   1), each stamped with the moment it was made, so a full linger is part of the latency; a row's latency is its insert time in the store (ingested_at,
   detected_at for anomalies: from then on it is queryable) minus that stamp. Planted spikes
   every 5 s give anomaly latencies.
3. Memory and CPU of every process of the stack during each run (bench/monitor.py).
4. Baseline: the same topic through bench/baseline_stream.py (per-trade z-score, scikit-learn
   predict per trade, SQLite row by row) for --baseline-trades trades; the ratio of the two
   throughputs is the headline.

Results go to stdout and, as a Markdown section, to --out (docs/performance.md by default;
the section between the RESULTS markers is replaced). Timings depend on what else the machine
runs; the load average at start and end is recorded with them.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import config as app_config  # noqa: E402
from bench import load  # noqa: E402
from bench.monitor import Monitor, Usage  # noqa: E402

log = logging.getLogger("bench.pipeline")
CANCEL_TIMEOUT_S = 600
MARK_BEGIN, MARK_END = "<!-- RESULTS BEGIN (bench/pipeline.py) -->", "<!-- RESULTS END -->"
# The soak has its own section, so that a soak run leaves the other results in place.
SOAK_BEGIN, SOAK_END = "<!-- SOAK BEGIN (bench/pipeline.py --soak-minutes) -->", "<!-- SOAK END -->"


class Stack:
    """The broker and the standalone cluster of the benchmark, and the environment of every
    command run against them."""

    def __init__(self, work: str, kafka_port: int, flink_rest_port: int, slots: int, tm_memory: str):
        self.work = work
        self.bootstrap = f"127.0.0.1:{kafka_port}"
        self.rest = f"http://localhost:{flink_rest_port}"
        self.env = dict(os.environ, RUN_DIR=work, LIB_DIR=os.path.join(ROOT, ".run", "lib"),
                        VENV_DIR=os.path.join(ROOT, ".venv"),
                        KAFKA_PORT=str(kafka_port), KAFKA_CONTROLLER_PORT=str(kafka_port + 1),
                        KAFKA_BOOTSTRAP_SERVERS=self.bootstrap, FLINK_REST_PORT=str(flink_rest_port),
                        FLINK_RPC_PORT=str(flink_rest_port + 2), FLINK_TASK_SLOTS=str(slots),
                        FLINK_TM_MEMORY=tm_memory, MODEL_REGISTRY=os.path.join(work, "models"),
                        SYMBOLS="*", LOG_LEVEL="WARNING", FLINK_RESTART_ATTEMPTS="0")

    def script(self, name: str, *args: str, env: dict | None = None, check: bool = True, **kwargs):
        command = ["bash", os.path.join(ROOT, "deploy", "local", name), *args]
        return subprocess.run(command, cwd=ROOT, env=env or self.env, check=check, **kwargs)

    def start(self) -> None:
        self.script("kafka.sh", "start")
        self.script("flink-cluster.sh", "start")

    def stop(self) -> None:
        self.script("flink-cluster.sh", "stop", check=False)
        self.script("kafka.sh", "stop", check=False)

    def rest_get(self, path: str):
        with urllib.request.urlopen(self.rest + path, timeout=10) as response:
            return json.loads(response.read())

    def running_job(self) -> str | None:
        for job in self.rest_get("/jobs/overview")["jobs"]:
            if job["state"] == "RUNNING":
                return job["jid"]
        return None

    def cancel(self, job_id: str) -> None:
        request = urllib.request.Request(f"{self.rest}/jobs/{job_id}?mode=cancel", method="PATCH")
        urllib.request.urlopen(request, timeout=10).close()

    def cancel_and_wait(self, job_id: str, client: subprocess.Popen) -> None:
        """Cancels the job and waits for `flink run` to return, which it does once every task has
        ended: only then has the store sink's worker closed the embedded store for the reads that
        follow. A job far behind its input (20,000 trades/s at parallelism 1) took two minutes to
        end its last task after cancelling the rest in a second, so the wait is generous."""
        self.cancel(job_id)
        started = time.monotonic()
        report_at = 30.0
        while client.poll() is None:
            waited = time.monotonic() - started
            if waited > CANCEL_TIMEOUT_S:
                raise RuntimeError(f"job {job_id} still running {CANCEL_TIMEOUT_S} s after it was cancelled")
            if waited >= report_at:
                log.info("  waiting for job %s to end (cancelled %.0f s ago)", job_id, waited)
                report_at += 30
            time.sleep(1)

    def producer(self):
        from kafka import KafkaProducer

        # Throughput settings as the project's producer uses them (acks=all, batching, KAFKA_COMPRESSION).
        compression = app_config.load().kafka.compression
        return KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024,
                             compression_type=None if compression == "none" else compression,
                             max_in_flight_requests_per_connection=5)

    def recreate_topic(self, topic: str, partitions: int) -> None:
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            try:
                admin.delete_topics([topic])
            except UnknownTopicOrPartitionError:
                pass
            deadline = time.monotonic() + 30
            while True:
                try:
                    admin.create_topics([NewTopic(topic, partitions, 1)])
                    return
                except TopicAlreadyExistsError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            admin.close()


def ensure_model(stack: Stack) -> None:
    """A model trained on the benchmark's own kind of trades (20,000 per default symbol)."""
    train_file = os.path.join(stack.work, "train.jsonl")
    if not os.path.exists(train_file):
        with open(train_file, "w", encoding="utf-8") as handle:
            for trade in load.bulk_trades(load.symbol_names(5), 100_000, 1_600_000_000_000, per_second=20, seed=3):
                handle.write(load.encode(trade).decode() + "\n")
    subprocess.run([sys.executable, "-m", "models.train", train_file, "--if-missing"], cwd=ROOT, env=stack.env,
                   check=True)


def store_counts(chdb_path: str, sql: str, params: dict | None = None) -> list[dict]:
    """A query on a store the job has released (chDB: one process per directory)."""
    import config
    from flink_jobs.store import open_store

    cfg = config.load(store={"chdb_path": chdb_path, "clickhouse_url": ""})
    with open_store(cfg.store) as store:
        return store.query(sql, params)


# The middle of a run, by the share of its rows stored: the job's start (JVM, Python workers, the
# model) before it and the last partial batches after it are left out.
STEADY_FROM, STEADY_TO = 0.1, 0.9


def steady_rate(chdb_path: str) -> float | None:
    """Trades per second while the job ran at full pace: the rows stored from the instant the store
    had STEADY_FROM of them to the instant it had STEADY_TO, by `ingested_at` (the store's insert
    time, one per insert), over the time between. Every stored row counts (no FINAL: a row written
    twice was work done twice). None when all rows came in one insert."""
    row = store_counts(chdb_path, f"""
        WITH (SELECT quantileExact({STEADY_FROM})(ingested_at) FROM trades) AS start_at,
             (SELECT quantileExact({STEADY_TO})(ingested_at) FROM trades) AS end_at
        SELECT countIf(ingested_at > start_at AND ingested_at <= end_at) AS n,
               toUnixTimestamp64Milli(any(start_at)) AS start_ms, toUnixTimestamp64Milli(any(end_at)) AS end_ms
        FROM trades""")[0]
    if row["n"] == 0 or row["end_ms"] <= row["start_ms"]:
        return None
    return row["n"] / ((row["end_ms"] - row["start_ms"]) / 1000.0)


def submit(stack: Stack, chdb_path: str, *job_args: str, env: dict | None = None, background: bool = False):
    env = dict(env or stack.env, CHDB_PATH=chdb_path)
    args = ("submit", *job_args)
    if background:
        command = ["bash", os.path.join(ROOT, "deploy", "local", "flink-cluster.sh"), *args]
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    return stack.script("flink-cluster.sh", *args, env=env, check=False, capture_output=True, text=True)


def throughput(stack: Stack, trades: int, symbols: int, partitions: int, parallelism: int,
               per_message: int = 1) -> dict:
    topic = f"bench-throughput-{symbols}"
    names = load.symbol_names(symbols)
    stack.recreate_topic(topic, partitions)
    producer = stack.producer()
    log.info("throughput: sending %d trades of %d symbols to %s, %d per message", trades, symbols, topic,
             per_message)
    sent, send_seconds = load.send_bulk(producer, topic, load.bulk_trades(names, trades, 1_700_000_000_000),
                                        progress=lambda n, s: log.info("  sent %d (%.0f/s)", n, n / s),
                                        per_message=per_message)
    producer.close()
    chdb_path = os.path.join(stack.work, f"chdb-throughput-{symbols}")
    subprocess.run(["rm", "-rf", chdb_path], check=True)
    report_path = os.path.join(stack.work, f"throughput-{symbols}.json")
    monitor = Monitor((ROOT,))
    monitor.start()
    result = submit(stack, chdb_path, "--bounded", "--topic", topic, "--group-id", f"bench-{time.time_ns()}",
                    "--parallelism", str(parallelism), "--run-report", report_path)
    usage = monitor.stop()
    if result.returncode != 0:
        raise RuntimeError(f"the throughput job failed:\n{result.stderr[-3000:]}")
    with open(report_path, encoding="utf-8") as handle:
        report = json.load(handle)
    stored = store_counts(chdb_path, "SELECT count() AS n, uniqExact(symbol, trade_id) AS distinct_trades "
                                     "FROM trades FINAL")[0]
    out = {"trades": sent, "symbols": symbols, "partitions": partitions, "parallelism": parallelism,
           "trades_per_message": per_message, "send_seconds": round(send_seconds, 1), "net_runtime_s": report["net_runtime_seconds"],
           "wall_s": report["wall_seconds"], "trades_per_s": round(sent / report["net_runtime_seconds"]),
           "steady_trades_per_s": _rounded(steady_rate(chdb_path)), "stored": stored["n"],
           "stored_distinct": stored["distinct_trades"], "usage": summarize(usage)}
    log.info("throughput %d symbols: %s", symbols, {k: v for k, v in out.items() if k != "usage"})
    return out


def _rounded(value: float | None) -> int | None:
    return None if value is None else round(value)


def wait_for_running_job(stack: Stack, client: subprocess.Popen, timeout_s: float = 180) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.poll() is not None:
            raise RuntimeError(f"the job ended before it ran:\n{client.stderr.read()[-3000:]}")
        job_id = stack.running_job()
        if job_id:
            return job_id
        time.sleep(1)
    raise RuntimeError("the job did not start")


def unbounded_job(stack: Stack, name: str, partitions: int, parallelism: int, job_env: dict):
    """A fresh topic and store, and the job on them from the earliest offset, in the background:
    (topic, store path, the `flink run` client process)."""
    topic = f"bench-{name}"
    stack.recreate_topic(topic, partitions)
    chdb_path = os.path.join(stack.work, f"chdb-{name}")
    subprocess.run(["rm", "-rf", chdb_path], check=True)
    client = submit(stack, chdb_path, "--topic", topic, "--group-id", f"bench-{time.time_ns()}",
                    "--starting-offsets", "earliest", "--parallelism", str(parallelism),
                    env=dict(stack.env, **job_env), background=True)
    return topic, chdb_path, client


def latency(stack: Stack, rates: list[int], seconds: float, symbols: int, partitions: int, parallelism: int,
            job_env: dict, settle_s: float = 0.0, message_trades: int = 1) -> list[dict]:
    """One unbounded job; each rate in turn on its own id range, for settle_s + seconds; then the
    store is read. Percentiles cover the trades sent after the first settle_s seconds at the rate:
    a fresh job at a new rate is still warming up (JIT compilation in the TaskManager, the Python
    workers' caches) and works off a backlog, which is not its steady-state latency. What
    happened while settling is reported too (its worst latency), and every row of the run must
    be stored."""
    market = load.Market(load.symbol_names(symbols), seed=11)
    topic, chdb_path, client = unbounded_job(stack, "latency", partitions, parallelism, job_env)
    runs: list[tuple[int, load.PacedRun, Usage]] = []
    try:
        job_id = wait_for_running_job(stack, client)
        producer = stack.producer()
        # Warm-up: the Python workers start and the store opens on the first records.
        warm = load.PacedRun(market, 200, 10, first_id=1, spike_every_s=3600)
        warm.run(producer, topic)
        for k, rate in enumerate(rates, start=1):
            run = load.PacedRun(market, rate, settle_s + seconds, first_id=k * 100_000_000,
                                message_trades=message_trades)
            monitor = Monitor((ROOT,))
            monitor.start()
            log.info("latency: %d trades/s for %.0f s (the first %.0f s to settle)", rate, settle_s + seconds,
                     settle_s)
            since_ms = int(time.time() * 1000 + settle_s * 1000)
            run.run(producer, topic)
            time.sleep(5)  # the last rows through the sink
            runs.append((rate, run, since_ms, monitor.stop()))
            log.info("  sent %d at %.0f/s", run.sent, run.achieved_rate)
        producer.close()
        time.sleep(3)
        stack.cancel_and_wait(job_id, client)
    finally:
        if client.poll() is None:
            client.kill()
    time.sleep(3)  # the sink's worker closes the store on cancel
    results = []
    for rate, run, since_ms, usage in runs:
        low, high = run.first_id, run.first_id + 100_000_000
        trades = store_counts(chdb_path, """
            SELECT count() AS rows, countIf(measured) AS measured_rows,
                   quantilesIf(0.5, 0.95, 0.99)(ms, measured) AS q, maxIf(ms, measured) AS max_ms,
                   maxIf(ms, NOT measured) AS settling_max_ms
            FROM (SELECT toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(event_time) AS ms,
                         toUnixTimestamp64Milli(event_time) >= {since:Int64} AS measured
                  FROM trades FINAL WHERE trade_id >= {low:UInt64} AND trade_id < {high:UInt64})""",
                              {"low": low, "high": high, "since": since_ms})[0]
        planted = {f"{s}:{i}" for (s, i), ms in zip(run.planted, run.planted_ms) if ms >= since_ms}
        anomalies = store_counts(chdb_path, """
            SELECT concat(a.symbol, ':', toString(a.trade_id)) AS key,
                   min(toUnixTimestamp64Milli(a.detected_at) - toUnixTimestamp64Milli(t.event_time)) AS ms
            FROM anomalies AS a FINAL INNER JOIN trades AS t FINAL USING (symbol, trade_id)
            WHERE a.trade_id >= {low:UInt64} AND a.trade_id < {high:UInt64} GROUP BY key""",
                                 {"low": low, "high": high})
        planted_ms = sorted(r["ms"] for r in anomalies if r["key"] in planted)
        results.append({
            "rate": rate, "sent": run.sent, "achieved_rate": round(run.achieved_rate), "stored": trades["rows"],
            "p50_ms": trades["q"][0], "p95_ms": trades["q"][1], "p99_ms": trades["q"][2], "max_ms": trades["max_ms"],
            "measured_rows": trades["measured_rows"], "settle_s": settle_s, "parallelism": parallelism,
            "settling_max_ms": trades["settling_max_ms"],
            "planted": len(planted), "planted_detected": len(planted_ms),
            "anomaly_p50_ms": percentile(planted_ms, 0.5), "anomaly_max_ms": planted_ms[-1] if planted_ms else None,
            "usage": summarize(usage)})
        log.info("latency %d/s: %s", rate, {k: v for k, v in results[-1].items() if k != "usage"})
    return results


def percentile(values: list[float], q: float):
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


def baseline(stack: Stack, trades: int, symbols: int) -> dict:
    topic = f"bench-throughput-{symbols}"
    db = os.path.join(stack.work, "baseline.sqlite")
    monitor = Monitor((ROOT,))
    monitor.start()
    result = subprocess.run([sys.executable, "-m", "bench.baseline_stream", "--bootstrap-servers", stack.bootstrap,
                             "--topic", topic, "--trades", str(trades), "--db", db],
                            cwd=ROOT, env=stack.env, check=True, capture_output=True, text=True)
    usage = monitor.stop()
    out = json.loads(result.stdout.strip().splitlines()[-1])
    out["usage"] = summarize(usage)
    log.info("baseline: %s", {k: v for k, v in out.items() if k != "usage"})
    return out


def soak(stack: Stack, minutes: float, rate: int, symbols: int, partitions: int, parallelism: int,
         job_env: dict, message_trades: int = 1) -> dict:
    """Memory of every role once a minute while `rate` trades/s flow for `minutes`."""
    market = load.Market(load.symbol_names(symbols), seed=13)
    topic, chdb_path, client = unbounded_job(stack, "soak", partitions, parallelism, job_env)
    series: list[dict] = []
    try:
        job_id = wait_for_running_job(stack, client)
        producer = stack.producer()
        monitor = Monitor((ROOT,), interval_s=5)
        monitor.start()
        for minute in range(int(minutes)):
            run = load.PacedRun(market, rate, 60, first_id=(minute + 1) * 100_000_000, message_trades=message_trades)
            run.run(producer, topic)
            latest = monitor.usage.samples[-1].rss_by_role if monitor.usage.samples else {}
            series.append({"minute": minute + 1, "achieved_rate": round(run.achieved_rate),
                           "rss_mb": {role: round(rss / 2**20) for role, rss in sorted(latest.items())}})
            log.info("soak minute %d: %s", minute + 1, series[-1])
        usage = monitor.stop()
        producer.close()
        stack.cancel_and_wait(job_id, client)
    finally:
        if client.poll() is None:
            client.kill()
    return {"minutes": minutes, "rate": rate, "series": series, "usage": summarize(usage)}


def summarize(usage: Usage) -> dict:
    return {"peak_rss_mb": {role: round(rss / 2**20) for role, rss in sorted(usage.peak_rss().items())},
            "largest_process_mb": {role: round(rss / 2**20) for role, rss in sorted(usage.largest_process_rss().items())},
            "cpu_s": {role: round(cpu, 1) for role, cpu in sorted(usage.cpu_seconds().items())}}


def machine_facts() -> dict:
    with open("/proc/meminfo", encoding="utf-8") as handle:
        mem_kb = int(handle.readline().split()[1])
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo", encoding="utf-8")
                  if line.startswith("model name")), platform.processor())
    return {"cores": os.cpu_count(), "cpu": model, "memory_gb": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "date": datetime.datetime.now(datetime.timezone.utc)
            .strftime("%Y-%m-%d %H:%M UTC"), "load_average_at_start": round(os.getloadavg()[0], 2)}


def ms(value) -> str:
    """A latency cell, '-' for none."""
    return "-" if value is None else f"{value:,.0f}"


def floor_name(results: dict) -> str:
    stages = results["args"].get("floor_stages", 2)
    return "the floor job, no detection" + (", one Python stage" if stages == 1 else "")


def markdown(results: dict, command: str) -> str:
    facts = results["machine"]
    begin, end = (SOAK_BEGIN, SOAK_END) if results.get("soak") else (MARK_BEGIN, MARK_END)
    lines = [begin, "", f"Command: `{command}`", "",
             f"Machine: {facts['cores']} cores ({facts['cpu']}), {facts['memory_gb']} GB, Python {facts['python']}; "
             f"{facts['date']}; load average {facts['load_average_at_start']} at start, "
             f"{results.get('load_average_at_end')} at end.", ""]
    if results.get("throughput"):
        detection = (f"**{floor_name(results)}** (bench/floor_job.py)" if results.get("args", {}).get("floor")
                     else "all three methods with ONNX")
        lines += ["**Throughput** (bounded job over a full topic; `flink run` on the standalone cluster; "
                  f"{detection}; chDB store):", "",
                  "| trades | symbols | trades per message | partitions / parallelism | net runtime (s) | trades/s | "
                  f"steady trades/s ({STEADY_FROM:.0%}-{STEADY_TO:.0%} of rows) | stored distinct |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for t in results["throughput"]:
            steady = t.get("steady_trades_per_s")
            lines.append(f"| {t['trades']:,} | {t['symbols']:,} | {t.get('trades_per_message', 1)} | "
                         f"{t['partitions']} / {t['parallelism']} | "
                         f"{t['net_runtime_s']:.1f} | **{t['trades_per_s']:,}** | "
                         f"{'-' if steady is None else f'{steady:,}'} | {t['stored_distinct']:,} |")
        lines += ["", "trades/s = trades / net runtime, the job's start included; steady = the rows stored "
                      f"while the job ran at full pace (between the instants the store held {STEADY_FROM:.0%} "
                      f"and {STEADY_TO:.0%} of them, by insert time); trades per message: a symbol's trades of "
                      "one producer linger window at the --producer-rate spread over the symbols.", ""]
    if results.get("baseline") and results.get("throughput"):
        b, ours = results["baseline"], results["throughput"][0]["trades_per_s"]
        lines += [f"**Baseline** (earlier design, one process, `bench/baseline_stream.py`): {b['trades']:,} trades "
                  f"in {b['seconds']:.1f} s = {b['trades_per_s']:,.0f} trades/s "
                  f"({b.get('steady_trades_per_s', 'n/a')} trades/s once every symbol has a model). "
                  f"**Ratio: {ours / b['trades_per_s']:.0f}x** overall"
                  + (f", {ours / b['steady_trades_per_s']:.0f}x steady" if b.get("steady_trades_per_s") else "")
                  + ".", ""]
    if results.get("latency"):
        settle = results["latency"][0].get("settle_s", 0)
        parallelism = results["latency"][0].get("parallelism")
        job = f"unbounded job at parallelism {parallelism}" if parallelism else "unbounded job"
        if results.get("args", {}).get("floor"):
            job = f"{floor_name(results)}, {job}"
        lines += [f"**Latency** from send to queryable row ({job}, paced input; percentiles over the "
                  f"trades sent after the first {settle:.0f} s at each rate, the worst latency of those first "
                  "seconds beside them):", "",
                  "| target rate | achieved | rows stored / sent | p50 ms | p95 ms | p99 ms | max ms | "
                  "max ms while settling | planted spikes found | anomaly latency p50 / max ms |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in results["latency"]:
            # No row sent after the settling period stored: ClickHouse gives nan quantiles and a 0 max.
            measured = r.get("measured_rows", r["stored"]) > 0
            p50, p95, p99, top = ((r["p50_ms"], r["p95_ms"], r["p99_ms"], r["max_ms"]) if measured
                                  else (None, None, None, None))
            lines.append(f"| {r['rate']:,}/s | {r['achieved_rate']:,}/s | {r['stored']:,} / {r['sent']:,} | "
                         f"{ms(p50)} | {ms(p95)} | **{ms(p99)}** | {ms(top)} | "
                         f"{ms(r.get('settling_max_ms')) if r.get('settle_s') else '-'} | "
                         f"{r['planted_detected']} / {r['planted']} | {r['anomaly_p50_ms']} / {r['anomaly_max_ms']} |")
        lines.append("")
    runs = [(f"throughput, {t['symbols']:,} symbols", t["usage"]) for t in results.get("throughput", [])]
    runs += [(f"latency, {r['rate']:,}/s", r["usage"]) for r in results.get("latency", [])]
    if results.get("baseline"):
        runs.append(("baseline", results["baseline"]["usage"]))
    if runs:
        roles = sorted({role for _, u in runs for role in u["peak_rss_mb"]})
        lines += ["**Peak memory** (MB RSS, sum over the role's processes) and CPU seconds per run:", "",
                  "| run | " + " | ".join(roles) + " |", "| --- |" + " --- |" * len(roles)]
        for name, u in runs:
            cells = [f"{u['peak_rss_mb'].get(r, '-')} MB, {u['cpu_s'].get(r, '-')} s" for r in roles]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if results.get("soak"):
        s = results["soak"]
        roles = sorted({role for point in s["series"] for role in point["rss_mb"]})
        lines += [f"**Memory over {s['minutes']:.0f} minutes at {s['rate']:,} trades/s** (MB RSS):", "",
                  "| minute | achieved rate | " + " | ".join(roles) + " |", "| --- | --- |" + " --- |" * len(roles)]
        for point in s["series"]:
            lines.append(f"| {point['minute']} | {point['achieved_rate']:,}/s | "
                         + " | ".join(str(point["rss_mb"].get(r, "-")) for r in roles) + " |")
        lines.append("")
    lines.append(end)
    return "\n".join(lines)


def write_section(path: str, section: str) -> None:
    """Replaces the section (between its markers, the first and last line of `section`) in the
    file, or appends it."""
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    begin, end = section.splitlines()[0], section.splitlines()[-1]
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=1_000_000, help="throughput run size; 0 to skip")
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--symbols-wide", type=int, default=2_000, help="second throughput run; 0 to skip")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--rates", default="1000,5000,20000", help="latency runs, trades/s; empty to skip")
    parser.add_argument("--rate-seconds", type=float, default=60, help="latency measured over this long per rate")
    parser.add_argument("--latency-parallelism", type=int, default=1,
                        help="parallelism of the latency job: on 2 cores one slot keeps up at 5,000 trades/s "
                             "with the latency settings, two do not (docs/performance.md)")
    parser.add_argument("--settle-seconds", type=float, default=90,
                        help="sent at each rate before the measured seconds, while the job warms up and works "
                             "off the backlog of its first seconds")
    parser.add_argument("--message-trades", type=int, default=None,
                        help="most trades of a symbol per message [KAFKA_MESSAGE_TRADES]; 1 = one per message")
    parser.add_argument("--message-linger-ms", type=int, default=None,
                        help="the producer's linger for a symbol's message [KAFKA_MESSAGE_LINGER_MS]")
    parser.add_argument("--producer-rate", type=int, default=100_000,
                        help="throughput runs: the input rate whose linger windows make the messages")
    parser.add_argument("--baseline-trades", type=int, default=20_000)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--soak-minutes", type=float, default=0, help="only the memory soak, this long")
    parser.add_argument("--soak-rate", type=int, default=5_000)
    parser.add_argument("--latency-env", default="PYTHON_BUNDLE_TIME_MS=20,SINK_FLUSH_INTERVAL_MS=100,"
                        "FLINK_BUFFER_TIMEOUT_MS=10,COOLDOWN_SECONDS=1",
                        help="job settings for the latency and soak runs (a 1 s cooldown lets every planted "
                             "spike raise its own anomaly)")
    parser.add_argument("--work", default=os.path.join(ROOT, ".run", "bench"))
    parser.add_argument("--kafka-port", type=int, default=19692)
    parser.add_argument("--flink-rest-port", type=int, default=18681)
    parser.add_argument("--task-slots", type=int, default=2)
    parser.add_argument("--tm-memory", default="3g")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "performance.md"))
    parser.add_argument("--keep-stack", action="store_true", help="leave the broker and cluster running")
    parser.add_argument("--floor", action="store_true",
                        help="run bench/floor_job.py instead of the job: the same topology and settings without "
                             "the detection, to measure what the framework, parsing and the store cost alone; "
                             "no baseline, and the results are printed (and kept in WORK/results.json), not "
                             "written to docs/performance.md unless --out is given")
    parser.add_argument("--floor-stages", type=int, choices=(1, 2), default=2,
                        help="with --floor: 2 keeps the job's two Python stages (parser, keyed operator); 1 parses "
                             "and writes in one operator chained to the source (latency runs at parallelism 1 only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)

    os.makedirs(args.work, exist_ok=True)
    job_env = dict(item.split("=", 1) for item in args.latency_env.split(",") if item)
    kafka = app_config.load().kafka
    max_trades = kafka.message_trades if args.message_trades is None else args.message_trades
    linger_ms = kafka.message_linger_ms if args.message_linger_ms is None else args.message_linger_ms
    args.message_trades, args.message_linger_ms = max_trades, linger_ms    # as run, in results.json

    def per_message(symbols: int) -> int:
        return load.trades_per_message(args.producer_rate, symbols, linger_ms, max_trades)

    paced_message_trades = max_trades if linger_ms > 0 else 1   # the paced runs linger one 10 ms tick
    stack = Stack(os.path.abspath(args.work), args.kafka_port, args.flink_rest_port, args.task_slots, args.tm_memory)
    if args.floor:
        stack.env["FLINK_JOB_SCRIPT"] = os.path.join(ROOT, "bench", "floor_job.py")
        stack.env["FLOOR_STAGES"] = str(args.floor_stages)
        if args.floor_stages == 1 and args.trades:
            log.info("--floor-stages 1 measures latency only: no throughput runs")
            args.trades = 0
        args.skip_baseline = True
        if args.out == parser.get_default("out"):
            args.out = ""
    results: dict = {"machine": machine_facts(), "args": vars(args)}
    stack.start()
    try:
        ensure_model(stack)
        if args.soak_minutes:
            results["soak"] = soak(stack, args.soak_minutes, args.soak_rate, args.symbols, args.partitions,
                                   args.parallelism, job_env, paced_message_trades)
        else:
            results["throughput"] = []
            if args.trades:
                results["throughput"].append(
                    throughput(stack, args.trades, args.symbols, args.partitions, args.parallelism,
                               per_message(args.symbols)))
            if args.trades and args.symbols_wide:
                results["throughput"].append(
                    throughput(stack, args.trades, args.symbols_wide, args.partitions, args.parallelism,
                               per_message(args.symbols_wide)))
            if args.trades and not args.skip_baseline:
                results["baseline"] = baseline(stack, args.baseline_trades, args.symbols)
            rates = [int(r) for r in args.rates.split(",") if r]
            if rates:
                results["latency"] = latency(stack, rates, args.rate_seconds, args.symbols, args.partitions,
                                             args.latency_parallelism, job_env, args.settle_seconds,
                                             paced_message_trades)
    finally:
        if not args.keep_stack:
            stack.stop()
    results["load_average_at_end"] = round(os.getloadavg()[0], 2)
    command = "python -m bench.pipeline " + " ".join(sys.argv[1:] if argv is None else argv)
    with open(os.path.join(args.work, "results.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    section = markdown(results, command.strip())
    print(section)
    if args.out:
        write_section(args.out, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
