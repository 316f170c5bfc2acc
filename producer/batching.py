"""Batch messages: a symbol's trades of a few milliseconds in one Kafka message.

The Flink job pays for every Kafka message on its way in (fetching, decompressing, turning the
record into a row for Python: about 40 µs a message on 2 cores, docs/performance.md), whatever
it holds. A batch message is a JSON array of one symbol's trade messages, in order
(flink_jobs/trades.py parse_message); a trade that finds no company within the linger leaves
alone, as the plain websocket object it is.

    batcher = MessageBatcher(max_trades=200, linger_s=0.010)
    for batch in batcher.add("BTCUSDT", message, tag):   # full batches, at once
        send(batch)
    for batch in batcher.due():                          # batches whose first trade waited the linger
        send(batch)
    for batch in batcher.drain():                        # everything, on shutdown
        send(batch)

Each batch carries the tags its trades were added with (the live producer's per-trade records),
so that acknowledgements and losses are still counted per trade.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple

from flink_jobs.trades import MAX_BATCH_MESSAGE_CHARS, InvalidTrade, Trade, encode_message, parse_message, parse_trade


def may_share(message: str, symbol: str | None) -> bool:
    """Whether a trade message may share a batch message: the job's parser accepts it alone (a
    message over 16 KiB is a dead letter alone, and must stay one) and inside a batch (one level
    deeper), as a trade of the symbol it is published under. Anything else is sent alone, so that
    the job judges it alone and one bad message never takes its batch's trades with it."""
    try:
        alone = parse_trade(message, lambda s: True)
        [inside] = parse_message("[" + message + "]", lambda s: True)
    except InvalidTrade:
        return False
    return alone.symbol == inside.symbol == symbol


class Batch(NamedTuple):
    symbol: str | None
    value: bytes            # one trade message, or a JSON array of them
    tags: list              # what each trade was added with, in order


class _Pending:
    __slots__ = ("messages", "tags", "size", "since")

    def __init__(self, since: float):
        self.messages: list[bytes] = []
        self.tags: list = []
        self.size = 1          # "[" and "]" with the commas between, counted as one per message
        self.since = since


class MessageBatcher:
    """Per symbol, the trades waiting for their message: at most `max_trades` of them and
    MAX_BATCH_MESSAGE_CHARS bytes of message, for at most `linger_s` after the first. With
    max_trades 1 or no linger every trade leaves at once, alone."""

    def __init__(self, max_trades: int, linger_s: float, clock: Callable[[], float] = time.monotonic):
        self.max_trades = max_trades
        self.linger_s = linger_s
        self.clock = clock
        self.pending: dict[str, _Pending] = {}
        self.held = 0          # trades waiting

    @property
    def batching(self) -> bool:
        return self.max_trades > 1 and self.linger_s > 0

    def add(self, symbol: str, message: bytes, tag=None) -> list[Batch]:
        """Takes one trade message of `symbol`; returns the batches that are ready because of it."""
        if not self.batching:
            return [Batch(symbol, message, [tag])]
        ready = []
        pending = self.pending.get(symbol)
        if pending is not None and pending.size + len(message) + 1 > MAX_BATCH_MESSAGE_CHARS:
            ready.append(self._take(symbol))
            pending = None
        if pending is None:
            pending = self.pending[symbol] = _Pending(self.clock())
        pending.messages.append(message)
        pending.tags.append(tag)
        pending.size += len(message) + 1
        self.held += 1
        if len(pending.messages) >= self.max_trades:
            ready.append(self._take(symbol))
        return ready

    def alone(self, symbol: str | None, message: bytes, tag=None) -> list[Batch]:
        """A message that must not share one (not a valid trade: it is published as it came, and
        the job dead-letters it alone), after the batch its symbol has waiting, to keep their order."""
        ready = [self._take(symbol)] if symbol in self.pending else []
        return ready + [Batch(symbol, message, [tag])]

    def due(self) -> list[Batch]:
        """The batches whose first trade has waited `linger_s`. A symbol's batch enters `pending`
        when its first trade comes, so the dict is in the order they fall due: the walk stops at the
        first that is not, and costs nothing per symbol that waits."""
        if not self.pending:
            return []
        oldest = self.clock() - self.linger_s
        ready = []
        for symbol, pending in self.pending.items():
            if pending.since > oldest:
                break
            ready.append(symbol)
        return [self._take(symbol) for symbol in ready]

    def next_due_in(self) -> float | None:
        """Seconds until the next batch is due (0 when one is), None when nothing waits."""
        if not self.pending:
            return None
        first = next(iter(self.pending.values()))
        return max(0.0, first.since + self.linger_s - self.clock())

    def drain(self) -> list[Batch]:
        """Every waiting batch, at once."""
        return [self._take(symbol) for symbol in list(self.pending)]

    def _take(self, symbol: str) -> Batch:
        pending = self.pending.pop(symbol)
        self.held -= len(pending.messages)
        if len(pending.messages) == 1:
            return Batch(symbol, pending.messages[0], pending.tags)
        return Batch(symbol, b"[" + b",".join(pending.messages) + b"]", pending.tags)


def batch_messages(trades: list[Trade], max_trades: int) -> list[bytes]:
    """One symbol's trades, in order, as messages of at most `max_trades` trades and
    MAX_BATCH_MESSAGE_CHARS bytes each, cut as the batcher cuts them (no linger: all at once);
    one trade per message (not an array) when max_trades is 1."""
    batcher = MessageBatcher(max_trades, float("inf"))
    batches = [batch for trade in trades for batch in batcher.add(trade.symbol, encode_message(trade))]
    return [batch.value for batch in batches + batcher.drain()]
