"""Backtest: the streaming job, bounded, over trade files; anomalies to the store and to a CSV.

    python -m flink_jobs.backtest INPUT... --out anomalies.csv [--symbol S] [--chdb-path DIR]

INPUT: Binance public-data trade files (CSV, .csv.gz, .zip; the symbol from a
SYMBOL-trades-... file name or --symbol) and JSON lines of websocket trade messages. They are
merged in time order into one JSON-lines file, which the job itself (flink_jobs/anomaly_job.py,
`--source files`) reads in a local MiniCluster; every other setting is the job's (environment,
see `python config.py`). The CSV holds the anomalies of the input's trades: symbol, trade_id,
event_time (ms since epoch), method, severity, zscore, if_score, model_version, price, the
feature values and the reason.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
import tempfile
import time

import config as app_config
from config import PROJECT_DIR, ConfigError
from flink_jobs.store import StoreError, open_store
from flink_jobs.trades import InvalidTrade, parse_trade
from producer.replay import merged_records
from producer.sources import SourceError

log = logging.getLogger("flink_jobs.backtest")
CSV_COLUMNS = ("symbol", "trade_id", "event_time", "method", "severity", "zscore", "if_score", "model_version",
               "price", "price_change_pct", "robust_z_return", "vwap_deviation_pct", "volume_spike_ratio",
               "price_velocity_pct_s", "trade_rate_burst", "buy_sell_imbalance", "time_gap_sec", "z_price",
               "reason")


def write_job_input(paths: list[str], symbol: str | None, out_path: str) -> dict[str, list[int]]:
    """Merges the inputs into one JSON-lines file; returns each symbol's [first, last] trade id."""
    ranges: dict[str, list[int]] = {}
    count = 0
    with open(out_path, "w", encoding="utf-8") as out:
        for record in merged_records(paths, symbol):
            out.write(record.message + "\n")
            count += 1
            try:
                trade = parse_trade(record.message, lambda s: True)
            except InvalidTrade:
                continue
            span = ranges.setdefault(trade.symbol, [trade.trade_id, trade.trade_id])
            span[0], span[1] = min(span[0], trade.trade_id), max(span[1], trade.trade_id)
    log.info("backtest input: %d messages, %s", count,
             ", ".join(f"{s} trades {lo}..{hi}" for s, (lo, hi) in sorted(ranges.items())))
    return ranges


def run_job(job_input: str, env: dict, extra_args: list[str]) -> dict:
    report = job_input + ".report.json"
    command = [sys.executable, os.path.join(PROJECT_DIR, "flink_jobs", "anomaly_job.py"), "--source", "files",
               "--input", job_input, "--run-report", report, *extra_args]
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"the job failed with status {result.returncode}")
    with open(report, encoding="utf-8") as handle:
        return json.load(handle)


def export_anomalies(store, ranges: dict[str, list[int]], since_ms: int, out_path: str) -> int:
    rows = []
    for symbol, (first_id, last_id) in sorted(ranges.items()):
        rows += store.run_named("backtest_anomalies", {"symbol": symbol, "first_id": first_id, "last_id": last_id,
                                                       "since_ms": since_ms})
    rows.sort(key=lambda r: (r["event_time"], r["symbol"], r["trade_id"], r["method"]))
    with open(out_path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m flink_jobs.backtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT")
    parser.add_argument("--out", required=True, help="CSV file for the anomalies")
    parser.add_argument("--symbol", help="symbol of CSV inputs whose file name does not say it")
    parser.add_argument("--chdb-path", help="embedded store directory [CHDB_PATH]")
    parser.add_argument("--parallelism", type=int, help="[FLINK_PARALLELISM]")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    env = dict(os.environ)
    if args.chdb_path:
        env["CHDB_PATH"] = os.path.abspath(args.chdb_path)
    if args.symbol:
        env.setdefault("SYMBOLS", "*")
    try:
        cfg = app_config.load(env)
        started = time.monotonic()
        # The store may already hold anomalies of the same trades from earlier runs (another model,
        # other settings); those keep their keys unless this run re-detects them. The CSV is what
        # *this* run detected: rows the store stamped (detected_at, its own clock) from now on.
        with open_store(cfg.store) as store:
            store.apply_schema()
            since_ms = int(store.scalar("SELECT toUnixTimestamp64Milli(now64(3))"))
        with tempfile.TemporaryDirectory(prefix="backtest-") as work:
            job_input = os.path.join(work, "trades.jsonl")
            ranges = write_job_input(args.inputs, args.symbol, job_input)
            extra = ["--parallelism", str(args.parallelism)] if args.parallelism else []
            report = run_job(job_input, env, extra)
        with open_store(cfg.store) as store:
            exported = export_anomalies(store, ranges, since_ms, args.out)
    except (ConfigError, SourceError, StoreError, RuntimeError) as error:
        log.error("%s", error)
        return 2
    log.info("backtest done in %.1f s (job %.1f s net): %d anomalies written to %s", time.monotonic() - started,
             report["net_runtime_seconds"], exported, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
