"""OHLCV bars: plain-Python arithmetic of one bar, shared by the Flink operator and the tests.

A bar covers the trades of one symbol whose trade time falls in [start, start + interval).
Open and close are the prices of the earliest and latest trade by (trade time, trade id), not by
arrival, so a bar does not depend on the order its trades arrived in within the watermark's
out-of-orderness. buy_volume is what takers bought (is_buyer_maker false), sell_volume the rest;
vwap = quote_volume / volume.
"""
from __future__ import annotations

from flink_jobs.trades import Trade

# Bar lengths the job builds, seconds (the `interval_s` column of the bars table).
BAR_INTERVALS_S = (1, 60)


def window_start_ms(trade_time_ms: int, interval_s: int) -> int:
    """Start of the tumbling window of `interval_s` seconds holding this instant (epoch-aligned)."""
    size = interval_s * 1000
    return trade_time_ms - trade_time_ms % size


def window_end_ms(start_ms: int, interval_s: int) -> int:
    """First instant after the window; its last instant, and the event-time timer's, is this - 1."""
    return start_ms + interval_s * 1000


class Bar:
    """The running aggregate of one symbol's window; `add` a trade, `row` the finished bar."""

    __slots__ = ("first", "last", "high", "low", "volume", "quote_volume", "trade_count", "buy_volume",
                 "sell_volume")

    def __init__(self, trade: Trade):
        key = (trade.trade_time_ms, trade.trade_id)
        self.first = (key, trade.price)
        self.last = (key, trade.price)
        self.high = self.low = trade.price
        self.volume = trade.qty
        self.quote_volume = trade.price * trade.qty
        self.trade_count = 1
        self.buy_volume = 0.0 if trade.is_buyer_maker else trade.qty
        self.sell_volume = trade.qty if trade.is_buyer_maker else 0.0

    def add(self, trade: Trade) -> None:
        key = (trade.trade_time_ms, trade.trade_id)
        if key < self.first[0]:
            self.first = (key, trade.price)
        if key > self.last[0]:
            self.last = (key, trade.price)
        if trade.price > self.high:
            self.high = trade.price
        if trade.price < self.low:
            self.low = trade.price
        self.volume += trade.qty
        self.quote_volume += trade.price * trade.qty
        self.trade_count += 1
        if trade.is_buyer_maker:
            self.sell_volume += trade.qty
        else:
            self.buy_volume += trade.qty

    def row(self, symbol: str, interval_s: int, start_ms: int) -> tuple:
        """The bars table row (store.TABLE_COLUMNS["bars"] order)."""
        return (symbol, interval_s, start_ms, self.first[1], self.high, self.low, self.last[1], self.volume,
                self.quote_volume, self.quote_volume / self.volume, self.trade_count, self.buy_volume,
                self.sell_volume)

    # Pickled into Flink state: slots need explicit state.
    def __getstate__(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state):
        for name, value in zip(self.__slots__, state):
            setattr(self, name, value)


class OpenBars:
    """One symbol's bars whose windows the watermark has not closed yet: {(interval_s, start_ms): Bar}.

    `add` puts a trade into every bar it belongs to and returns the intervals whose window had
    already closed (the trade is late for those); `close_until` hands out, and forgets, every
    bar whose window ended at or before a watermark. Kept in keyed state, one per symbol.
    """

    __slots__ = ("bars", "last_trade_id")

    def __init__(self):
        self.bars: dict[tuple[int, int], Bar] = {}
        # The scoring operator drops a repeated or out-of-order trade id as a dead letter; bars
        # apply the same rule so that they cover exactly the trades the trades table holds.
        self.last_trade_id = -1

    def is_repeat(self, trade: Trade) -> bool:
        return trade.trade_id <= self.last_trade_id

    def add(self, trade: Trade, watermark_ms: int) -> tuple[list[int], list[int]]:
        """Adds the trade; returns (ends of windows newly opened, intervals it was late for)."""
        self.last_trade_id = trade.trade_id
        opened, late = [], []
        for interval_s in BAR_INTERVALS_S:
            start = window_start_ms(trade.trade_time_ms, interval_s)
            end = window_end_ms(start, interval_s)
            if end - 1 <= watermark_ms:
                late.append(interval_s)
                continue
            bar = self.bars.get((interval_s, start))
            if bar is None:
                self.bars[(interval_s, start)] = Bar(trade)
                opened.append(end)
            else:
                bar.add(trade)
        return opened, late

    def close_until(self, watermark_ms: int, symbol: str) -> list[tuple]:
        """Rows of every bar whose window ended at or before the watermark, by interval, oldest first."""
        due = sorted(key for key in self.bars if window_end_ms(key[1], key[0]) - 1 <= watermark_ms)
        return [self.bars.pop(key).row(symbol, key[0], key[1]) for key in due]

    def __getstate__(self):
        return self.bars, self.last_trade_id

    def __setstate__(self, state):
        self.bars, self.last_trade_id = state
