"""What the scoring operator costs per trade, outside Flink: the job's own ScoreTrades (features,
bars, micro-batches, ONNX, candidates, the trades' store records) on the benchmark's market.

    python -m bench.scoring [--symbols 5] [--per-call 2000] [--trades 200000]
                            [--registry .run/bench/models] [--repeat 3]

A call is what a parse batch brings the operator: one symbol's trades (`--per-call` of them; with
2,000 symbols a parse batch holds one or a few per symbol), the calls of all symbols interleaved in
time. Around the operator stand the least of Flink: keyed state kept deserialized (PyFlink's state
cache; the pickling at a bundle's end is not counted), timers that are not fired, metrics that
count nothing, and a watermark two seconds behind the trades. The operator's micro-batch fills to
IFOREST_BATCH_SIZE or flushes after IFOREST_BATCH_MS, as in the job. Each pass starts from empty
state; the best of `--repeat` passes is reported, with the flushes it made.

A model is needed: the latest in `--registry`, trained by `python -m bench.pipeline` (or
`python -m models.train ... --registry DIR`).
"""
from __future__ import annotations

import argparse
import os
import time

import config
from bench import load
from config import PROJECT_DIR

DEFAULT_REGISTRY = os.path.join(PROJECT_DIR, ".run", "bench", "models")
WATERMARK_LAG_MS = 2_000
START_MS = 1_700_000_000_000


class CachedState:
    """A keyed ValueState as PyFlink's state cache serves it: the object itself, per key."""

    def __init__(self):
        self.by_key, self.key = {}, None

    def value(self):
        return self.by_key.get(self.key)

    def update(self, value):
        self.by_key[self.key] = value


class _Counter:
    def inc(self, n=1):
        pass


class _Metrics:
    def counter(self, name):
        return _Counter()

    def gauge(self, name, read):
        pass


class _RuntimeContext:
    def __init__(self, state):
        self.state = state

    def get_state(self, descriptor):
        return self.state

    def get_metrics_group(self):
        return _Metrics()


class _Timers:
    def __init__(self):
        self.watermark = -(2**63)

    def current_processing_time(self):
        return int(time.time() * 1000)

    def current_watermark(self):
        return self.watermark

    def register_processing_time_timer(self, instant):
        pass

    def register_event_time_timer(self, instant):
        pass


class _Context:
    def __init__(self, timers):
        self.key, self.timers = None, timers

    def get_current_key(self):
        return self.key

    def timer_service(self):
        return self.timers


def market_calls(symbols: int, trades: int, per_call: int, rate: int) -> list:
    """(symbol, [trade tuples]) calls: trades round-robin over the symbols at `rate` per second,
    each symbol's cut into calls of `per_call`, all calls in the order of their first trade."""
    market = load.Market(load.symbol_names(symbols))
    names = market.symbols
    by_symbol: dict = {name: [] for name in names}
    for i in range(trades):
        name = names[i % len(names)]
        by_symbol[name].append(tuple(market.trade(name, START_MS + i * 1000 // rate)))
    calls = [(name, rows[start:start + per_call]) for name, rows in by_symbol.items()
             for start in range(0, len(rows), per_call)]
    return sorted(calls, key=lambda call: call[1][0][4])


def one_pass(calls: list, detection) -> tuple[float, int]:
    """Seconds for the calls through a new operator, and the micro-batches it scored."""
    from flink_jobs.operators import ScoreTrades

    state, timers = CachedState(), _Timers()
    operator = ScoreTrades(detection, bars=True)
    operator.open(_RuntimeContext(state))
    context = _Context(timers)
    flushes = 0
    flush = operator._flush

    def counted(record, out):
        nonlocal flushes
        flushes += bool(operator.pending)
        flush(record, out)

    operator._flush = counted
    started = time.perf_counter()
    for symbol, trades in calls:
        state.key = context.key = symbol
        timers.watermark = max(timers.watermark, trades[0][4] - WATERMARK_LAG_MS)
        operator.process_element(trades, context)
    return time.perf_counter() - started, flushes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--per-call", type=int, default=2000, help="a symbol's trades per call")
    parser.add_argument("--trades", type=int, default=200_000)
    parser.add_argument("--rate", type=int, default=100_000, help="the market's trades per second (trade times)")
    parser.add_argument("--registry", default=DEFAULT_REGISTRY)
    parser.add_argument("--repeat", type=int, default=3, help="the best of this many passes")
    args = parser.parse_args()

    detection = config.load({"MODEL_REGISTRY": args.registry}).detection
    calls = market_calls(args.symbols, args.trades, args.per_call, args.rate)
    one_pass(calls[:50], detection)   # the compiled kernel loaded, the model's session warm
    best, flushes = min(one_pass(calls, detection) for _ in range(args.repeat))
    print(f"{args.trades:,} trades, {args.symbols} symbols, {args.per_call} per call ({len(calls):,} calls), "
          f"best of {args.repeat}: {best:.2f} s, {best / args.trades * 1e6:.2f} us per trade, "
          f"{flushes} micro-batches ({args.trades / max(flushes, 1):.0f} trades each)")


if __name__ == "__main__":
    main()
