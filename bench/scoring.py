"""What the scoring operator costs per trade, outside Flink: the job's own ScoreTrades (features,
bars, micro-batches, ONNX, candidates, the trades' store records) on the benchmark's market.

    python -m bench.scoring [--symbols 5] [--per-call 2000] [--trades 200000]
                            [--registry .run/bench/models] [--repeat 3]
    python -m bench.scoring --per-message 200 [--batch-messages 1000] ...   # the parser as well

A call is what a parse batch brings the operator: one symbol's trades (`--per-call` of them; with
2,000 symbols a parse batch holds one or a few per symbol), the calls of all symbols interleaved in
time. With `--per-message`, the trades are first sent as the producers do (a symbol's next trades
in one message) and the calls are what the job's parser makes of `--batch-messages` of them at a
time, each record pickled and unpickled as it crosses to the operator; the parser's and the
crossing's costs are reported beside the operator's. Around the operator stand the least of Flink: keyed state kept deserialized (PyFlink's state
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
import pickle
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


def market_trades(symbols: int, trades: int, rate: int) -> list:
    """The market's trades: round-robin over the symbols at `rate` per second."""
    market = load.Market(load.symbol_names(symbols))
    names = market.symbols
    return [market.trade(names[i % len(names)], START_MS + i * 1000 // rate) for i in range(trades)]


def market_calls(trades: list, per_call: int) -> list:
    """(symbol, first trade time, trade block) calls: each symbol's trades cut into calls of
    `per_call`, all calls in the order of their first trade."""
    from flink_jobs.trade_block import block_of

    by_symbol: dict = {}
    for trade in trades:
        by_symbol.setdefault(trade.symbol, []).append(trade)
    calls = [(name, rows[start].trade_time_ms, block_of(rows[start:start + per_call]))
             for name, rows in by_symbol.items() for start in range(0, len(rows), per_call)]
    return sorted(calls, key=lambda call: call[1])


def messages_of(trades: list, per_message: int) -> list:
    """The trades as a producer sends them: a symbol's next `per_message` trades in one message
    (one trade each: single messages), in the order they fill."""
    pending: dict = {}
    messages = []
    for trade in trades:
        batch = pending.setdefault(trade.symbol, [])
        batch.append(trade)
        if len(batch) == per_message:
            messages += load.batch_messages(pending.pop(trade.symbol), per_message)
    for batch in pending.values():
        messages += load.batch_messages(batch, per_message)
    return messages


def parsed_calls(messages: list, batch_messages: int, detection) -> tuple[float, float, list]:
    """The job's parser over the messages in Arrow-sized batches: (seconds parsing, seconds
    unpickling its records as the scoring operator's input, the (symbol, event time, payload)
    calls it makes)."""
    from flink_jobs.parse_batches import group_batch

    parsing = unpickling = 0.0
    calls = []
    for start in range(0, len(messages), batch_messages):
        began = time.perf_counter()
        out = group_batch(messages[start:start + batch_messages], detection.accepts, lambda reason, raw: None)
        parsed = time.perf_counter()
        if out.rejected:
            raise SystemExit(f"{out.rejected} messages rejected: the benchmark's messages must all parse")
        groups = [(key, event_time, pickle.loads(payload))
                  for key, payload, event_time in zip(out.keys, out.payloads, out.event_times) if key]
        unpickling += time.perf_counter() - parsed
        parsing += parsed - began
        calls += groups
    return parsing, unpickling, calls


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
    for symbol, event_time, payload in calls:
        state.key = context.key = symbol
        timers.watermark = max(timers.watermark, event_time - WATERMARK_LAG_MS)
        operator.process_element(payload, context)
    return time.perf_counter() - started, flushes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--per-call", type=int, default=2000, help="a symbol's trades per call")
    parser.add_argument("--per-message", type=int, default=0,
                        help="parse too: the trades as messages of this many of a symbol's trades, through the "
                             "job's parser in batches of --batch-messages, its records pickled as they cross")
    parser.add_argument("--batch-messages", type=int, default=1_000, help="messages per parse batch "
                        "(PYTHON_ARROW_BATCH_SIZE)")
    parser.add_argument("--trades", type=int, default=200_000)
    parser.add_argument("--rate", type=int, default=100_000, help="the market's trades per second (trade times)")
    parser.add_argument("--registry", default=DEFAULT_REGISTRY)
    parser.add_argument("--repeat", type=int, default=3, help="the best of this many passes")
    args = parser.parse_args()

    detection = config.load({"MODEL_REGISTRY": args.registry, "SYMBOLS": "*"}).detection
    trades = market_trades(args.symbols, args.trades, args.rate)
    if args.per_message:
        messages = messages_of(trades, args.per_message)
        runs = [parsed_calls(messages, args.batch_messages, detection) for _ in range(args.repeat)]
        parsing, unpickling, calls = min(r[0] for r in runs), min(r[1] for r in runs), runs[0][2]
        shape = f"{args.per_message} per message, {args.batch_messages} messages a parse batch"
    else:
        parsing, unpickling, calls = 0.0, 0.0, market_calls(trades, args.per_call)
        shape = f"{args.per_call} per call"
    one_pass(calls[:50], detection)   # the compiled kernel loaded, the model's session warm
    best, flushes = min(one_pass(calls, detection) for _ in range(args.repeat))

    def per_trade(seconds: float) -> str:
        return f"{seconds / args.trades * 1e6:.2f}"

    print(f"{args.trades:,} trades, {args.symbols} symbols, {shape} ({len(calls):,} calls), best of {args.repeat}, "
          f"us per trade: " + (f"parse {per_trade(parsing)}, unpickle {per_trade(unpickling)}, " if args.per_message
                               else "") +
          f"scoring {per_trade(best)}; {flushes} micro-batches ({args.trades / max(flushes, 1):.0f} trades each)")


if __name__ == "__main__":
    main()
