"""Prints what a run left in the store: trades, anomalies and dead letters per symbol.

    python -m flink_jobs.summary [--wall-seconds S]

Reads the store the configuration names (CHDB_PATH or CLICKHOUSE_URL). With the embedded store
run it after the job has finished: a chDB directory has one owner at a time.
"""
from __future__ import annotations

import argparse
import json
import sys

import config as app_config
from config import ConfigError
from flink_jobs.store import StoreError, open_store


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table of the rows' columns."""
    cells = [[str(row[c]) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join("  " + line for line in lines)


def summarize(store, run_report: dict | None = None) -> str:
    trades = store.run_named("trades_per_symbol")
    anomalies = store.run_named("anomalies_per_symbol")
    dead = store.run_named("dead_letters_by_reason")
    latest = store.run_named("latest_anomalies", {"limit": 5})
    total = sum(row["trades"] for row in trades)
    out = [f"Trades per symbol ({total} in all):", table(trades, ["symbol", "trades", "first_trade", "last_trade",
                                                                   "min_price", "max_price"])]
    out += ["", f"Anomalies per symbol ({sum(r['anomalies'] for r in anomalies)} in all):",
            table(anomalies, ["symbol", "method", "anomalies", "max_abs_score"]) if anomalies else "  none"]
    out += ["", f"Dead letters ({sum(r['messages'] for r in dead)} in all):",
            table(dead, ["stage", "reason_kind", "messages"]) if dead else "  none"]
    if latest:
        out += ["", "Latest anomalies:"] + [f"  {r['trade_time']} {r['symbol']} [{r['severity']}] {r['reason']}"
                                           for r in latest]
    if run_report:
        wall, net = run_report["wall_seconds"], run_report["net_runtime_seconds"]
        out += ["", f"Throughput: {total} trades; job wall time {wall:.1f} s (start-up included) = "
                    f"{total / wall:,.0f} trades/s; net job runtime {net:.1f} s = {total / net:,.0f} trades/s"]
    return "\n".join(out)


def how_to_query(cfg) -> str:
    if cfg.store.backend == "chdb":
        where = f"chdb.connect('file:{cfg.store.chdb_path}')"
        return (f"Query the store with SQL (embedded chDB, database {cfg.store.database}):\n"
                f"  .venv/bin/python -c \"import chdb; c = {where}; c.query('USE {cfg.store.database}'); "
                f"print(c.query('SELECT symbol, count() FROM trades FINAL GROUP BY symbol', 'Pretty'))\"\n"
                f"  more queries: python -m flink_jobs.query --list (sql/queries/); tables: trades, anomalies, bars, "
                f"dead_letters (read with FINAL)")
    return f"Query the store with SQL: clickhouse client against {cfg.store.clickhouse_url}, database {cfg.store.database}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flink_jobs.summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-report", metavar="FILE", help="the job's --run-report file, to report trades/s")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = app_config.load()
        run_report = None
        if args.run_report:
            with open(args.run_report, encoding="utf-8") as handle:
                run_report = json.load(handle)
        with open_store(cfg.store) as store:
            print(summarize(store, run_report))
    except (ConfigError, StoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print()
    print(how_to_query(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
