"""What the detection decision costs per trade and per anomaly candidate when the trade rate steps up.

A step in a symbol's trade rate makes nearly every trade a rate z-score (and combined) candidate
until the rolling baseline catches up (docs/performance.md, "Eighth round"). This runs the job's
own code for that decision, without Flink: the benchmark's market (bench/load.py) at `--rate`
trades/s, then at `--step-rate`, features per trade, the model's micro-batch scores, and then,
timed alone, `candidates()` for every scored trade and the cooldown's verdict on each candidate
(offline.py does the same in the same order; the job's operators split it between scoring and
the cooldown).

    python -m bench.burst [--symbols 5] [--rate 1000] [--seconds 120] [--step-rate 3000]
                          [--step-seconds 30] [--registry .run/bench/models] [--cooldown-seconds 1]
                          [--repeat 3]

A model is needed for the iforest and combined methods: the latest in `--registry`, trained by
`python -m bench.pipeline` (or `python -m models.train ... --registry DIR`).
"""
from __future__ import annotations

import argparse
import os
import time

import config
from config import PROJECT_DIR, DetectionConfig
from bench import load
from flink_jobs.detectors import methods
from flink_jobs.detectors.zscore import ZScoreDetector
from flink_jobs.features.symbol_state import observe_in_order

DEFAULT_REGISTRY = os.path.join(PROJECT_DIR, ".run", "bench", "models")
BATCH = 512  # the job's scoring micro-batch at most (IFOREST_BATCH_SIZE's default)


def market_trades(symbols: int, phases: list[tuple[int, int]]) -> list:
    """Trades round-robin over the symbols, each phase (rate, seconds) in turn, evenly spaced."""
    market = load.Market(load.symbol_names(symbols))
    names, trades, start_ms, turn = market.symbols, [], 1_700_000_000_000, 0
    for rate, seconds in phases:
        for i in range(rate * seconds):
            trades.append(market.trade(names[turn % len(names)], start_ms + i * 1000 // rate))
            turn += 1
        start_ms += seconds * 1000
    return trades


def scored_batches(trades: list, detection: DetectionConfig, model) -> list:
    """[(batch, [(trade, features, score, label)])], features computed in trade order."""
    states: dict = {}
    observed = list(observe_in_order(states, trades, detection.window_size))
    out = []
    for start in range(0, len(observed), BATCH):
        chunk = observed[start:start + BATCH]
        batch = methods.score_batch(model, [f for _, f in chunk])
        out.append((batch, [(t, f, s, label) for (t, f), s, label in zip(chunk, batch.scores, batch.labels)]))
    return out


def decide(batches: list, detection: DetectionConfig) -> tuple[int, int]:
    """The decision path, as offline.detect takes it: (candidates, anomalies let through)."""
    zscore, cooldown = ZScoreDetector(detection), methods.Cooldown(detection.cooldown_seconds)
    last_by_symbol: dict = {}
    made = passed = 0
    for batch, rows in batches:
        for trade, features, score, label in rows:
            found = methods.candidates(detection, zscore, trade, features, score, label, batch)
            made += len(found)
            for candidate in found:
                if cooldown.allow(last_by_symbol.setdefault(trade.symbol, {}), candidate.method, trade.trade_time_ms):
                    passed += 1
                    methods.explain(candidate, zscore)
    return made, passed


def crossing_seconds(batches: list, detection: DetectionConfig) -> float:
    """Packing each symbol's candidates of each batch as one record and unpacking it, as they cross
    from scoring to the cooldown (PyFlink pickles the record's field with cloudpickle)."""
    import cloudpickle

    from flink_jobs.operators import pack_candidates, unpack_candidates

    zscore = ZScoreDetector(detection)
    records = []
    for batch, rows in batches:
        by_symbol: dict = {}
        for trade, features, score, label in rows:
            found = methods.candidates(detection, zscore, trade, features, score, label, batch)
            if found:
                by_symbol.setdefault(trade.symbol, []).extend(found)
        records.extend(by_symbol.values())
    started = time.perf_counter()
    for record in records:
        unpack_candidates(cloudpickle.loads(cloudpickle.dumps(pack_candidates(record))))
    return time.perf_counter() - started


def timed(batches: list, detection: DetectionConfig, repeat: int) -> tuple[float, int, int]:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        made, passed = decide(batches, detection)
        best = min(best, time.perf_counter() - started)
    return best, made, passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--rate", type=int, default=1000, help="trades/s before the step")
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--step-rate", type=int, default=3000, help="trades/s after the step")
    parser.add_argument("--step-seconds", type=int, default=30)
    parser.add_argument("--registry", default=DEFAULT_REGISTRY)
    parser.add_argument("--cooldown-seconds", type=float, default=1.0,
                        help="as the latency runs of bench.pipeline; the job's default is longer")
    parser.add_argument("--repeat", type=int, default=3, help="the best of this many timed passes")
    args = parser.parse_args()

    from flink_jobs.detectors.iforest import OnnxIsolationForest
    from models import registry

    model = OnnxIsolationForest.from_registry(registry.load_usable(args.registry))
    detection = config.load(detection={"cooldown_seconds": args.cooldown_seconds}).detection
    before = scored_batches(market_trades(args.symbols, [(args.rate, args.seconds)]), detection, model)
    both = scored_batches(market_trades(args.symbols, [(args.rate, args.seconds), (args.step_rate, args.step_seconds)]),
                          detection, model)
    steady_s, steady_made, _ = timed(before, detection, args.repeat)
    both_s, both_made, both_passed = timed(both, detection, args.repeat)
    step_trades = args.step_rate * args.step_seconds
    crossing_s = crossing_seconds(both, detection) - crossing_seconds(before, detection)
    step_s, step_made = both_s - steady_s, both_made - steady_made
    print(f"model {model.version}; {args.symbols} symbols; {args.rate}/s for {args.seconds} s, then "
          f"{args.step_rate}/s for {args.step_seconds} s; best of {args.repeat}")
    print(f"before the step: {steady_made:,} candidates in {args.rate * args.seconds:,} trades, "
          f"{steady_s / (args.rate * args.seconds) * 1e6:.2f} us per trade")
    print(f"after the step:  {step_made:,} candidates in {step_trades:,} trades, "
          f"{step_s / step_trades * 1e6:.2f} us per trade, {step_s / max(step_made, 1) * 1e6:.2f} us per candidate "
          f"(trades without a candidate at the steady cost included); {both_passed:,} let through in all")
    print(f"crossing to the cooldown after the step (packed per symbol and batch, and unpacked): "
          f"{crossing_s / step_trades * 1e6:.2f} us per trade, {crossing_s / max(step_made, 1) * 1e6:.2f} us per candidate")


if __name__ == "__main__":
    main()
