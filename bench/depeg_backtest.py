"""The USDC de-peg of 10 to 13 March 2023 through the backtest: what is flagged, and when.

    python -m bench.depeg_backtest [--trades 1000000] [--work .run/depeg]

BTCUSDC trades are DERIVED (producer/derive.py, seed 11) from the real Binance.US 1-minute
candles of 10-13 March 2023; a model is trained on trades derived the same way from 1-7 March.
Then `python -m flink_jobs.backtest` runs the streaming job over them (1,000,000 trades by
default, which also times the backtest at that size) and this prints the anomalies per 6 hours
and method, and the strongest ones.
"""
from __future__ import annotations

import argparse
import collections
import csv
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANDLES = os.path.join(ROOT, "producer", "samples", "BTCUSDC_1m_20230301_20230321.csv.gz")


def sh(*args, env=None):
    print("$", " ".join(args), flush=True)
    subprocess.run(args, cwd=ROOT, env=env, check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.depeg_backtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--work", default=os.path.join(ROOT, ".run", "depeg"))
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    py = sys.executable
    train = os.path.join(args.work, "BTCUSDC-trades-2023-03-01_07.csv")
    depeg = os.path.join(args.work, "BTCUSDC-trades-2023-03-10_13.csv")
    sh(py, "-m", "producer", "derive", "--candles", CANDLES, "--start", "2023-03-01T00:00", "--end", "2023-03-08T00:00",
       "--trades", str(args.trades // 2), "--seed", "10", "--out", train)
    sh(py, "-m", "producer", "derive", "--candles", CANDLES, "--start", "2023-03-10T00:00", "--end", "2023-03-14T00:00",
       "--trades", str(args.trades), "--seed", "11", "--first-id", "100000000", "--out", depeg)
    env = dict(os.environ, MODEL_REGISTRY=os.path.join(args.work, "models"), SYMBOLS="BTCUSDC",
               CHDB_PATH=os.path.join(args.work, "chdb"))
    sh(py, "-m", "models.train", train, env=env)
    out = os.path.join(args.work, "anomalies.csv")
    started = time.monotonic()
    sh(py, "-m", "flink_jobs.backtest", depeg, "--out", out, env=env)
    elapsed = time.monotonic() - started

    with open(out, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    buckets = collections.Counter()
    for r in rows:
        t = datetime.fromtimestamp(int(r["event_time"]) / 1000, timezone.utc)
        buckets[(t.strftime("%m-%d"), t.hour // 6 * 6, r["method"])] += 1
    print(f"\nbacktest of {args.trades:,} trades: {elapsed:.0f} s wall; {len(rows)} anomalies\n")
    print("| day | hours (UTC) | zscore | iforest | combined |\n| --- | --- | --- | --- | --- |")
    for day in ("03-10", "03-11", "03-12", "03-13"):
        for hour in range(0, 24, 6):
            counts = [buckets[(day, hour, m)] for m in ("zscore", "iforest", "combined")]
            print(f"| {day} | {hour:02d}-{hour + 6:02d} | " + " | ".join(map(str, counts)) + " |")
    strongest = sorted((r for r in rows if r["method"] == "combined"), key=lambda r: float(r["zscore"]) ** 2,
                       reverse=True)[:8]
    print("\nStrongest combined anomalies:\n")
    for r in sorted(strongest, key=lambda r: int(r["event_time"])):
        t = datetime.fromtimestamp(int(r["event_time"]) / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        print(f"- {t} UTC [{r['severity']}] {r['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
