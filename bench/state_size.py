"""Bytes of Flink keyed state per symbol: the job's SymbolState, pickled as the job stores it, after real
trades (docs/scaling.md). The state holds bounded windows, so it stops growing once they are full.

    python -m bench.state_size [--trades-csv producer/samples/ETHUSDT-trades-2023-02-02.csv] [--passes 3]
"""
from __future__ import annotations

import argparse
import csv
import os
import pickle
import time

from config import PROJECT_DIR, DetectionConfig
from flink_jobs.features.kernel_cache import warm_up
from flink_jobs.features.symbol_state import SymbolState, observe_all
from flink_jobs.trades import Trade

DEFAULT_CSV = os.path.join(PROJECT_DIR, "producer", "samples", "ETHUSDT-trades-2023-02-02.csv")


def read_trades(path: str, symbol: str) -> list[Trade]:
    with open(path, encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle) if r and r[0] != "id"]
    return [Trade(symbol, int(r[0]), float(r[1]), float(r[2]), int(r[4]), int(r[4]), r[5] == "true") for r in rows]


def state_sizes(trades: list[Trade], window: int, passes: int) -> list[tuple[int, int]]:
    """(trades observed, pickled bytes) after each pass; later passes shift ids and times forward."""
    state, seen, sizes = SymbolState(window), 0, []
    span_ms = trades[-1].trade_time_ms - trades[0].trade_time_ms + 1
    for p in range(passes):
        observe_all(state, [t._replace(trade_id=t.trade_id + p * len(trades), trade_time_ms=t.trade_time_ms + p * span_ms,
                                       event_time_ms=t.event_time_ms + p * span_ms) for t in trades])
        seen += len(trades)
        sizes.append((seen, len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades-csv", default=DEFAULT_CSV)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    window = DetectionConfig().window_size
    trades = read_trades(args.trades_csv, "ETHUSDT")
    warm_up()  # the compiled features loaded (or compiled) before the clock starts
    sizes = state_sizes(trades, window, args.passes)
    started = time.perf_counter()  # timed on a second run: the first pays for first calls
    state_sizes(trades, window, args.passes)
    elapsed = time.perf_counter() - started
    for seen, size in sizes:
        print(f"after {seen:>6,} trades (ROLLING_WINDOW={window}): {size:,} bytes pickled")
    print(f"feature update alone: {elapsed / sizes[-1][0] * 1e6:.1f} us per trade "
          f"(one compiled call per pass; no Flink, no ONNX, no sink)")


if __name__ == "__main__":
    main()
