"""OHLCV bars: plain-Python arithmetic of one bar, shared by the Flink operator and the tests.

A bar covers the trades of one symbol whose trade time falls in [start, start + interval).
Open and close are the prices of the earliest and latest trade by (trade time, trade id), not by
arrival, so a bar does not depend on the order its trades arrived in within the watermark's
out-of-orderness. buy_volume is what takers bought (is_buyer_maker false), sell_volume the rest;
vwap = quote_volume / volume.
"""
from __future__ import annotations

import numpy as np

from flink_jobs.state_pickling import StdlibPickled
from flink_jobs.trade_block import TradeColumns
from flink_jobs.trades import Trade

# Bar lengths the job builds, seconds (the `interval_s` column of the bars table).
BAR_INTERVALS_S = (1, 60)
# Grid of the event-time timers that close a quiet symbol's bars (a trading symbol's close as it
# trades): a 1-second bar of a symbol that stops trading is written up to this much later. A
# divisor of every interval above that is longer than it, so a minute bar closes on its own end.
SWEEP_MS = 10_000
NEVER = 2**63 - 1
# The first field of OpenBars' pickled form since its bars are plain tuples.
OPEN_BARS_LAYOUT = "open-bars-tuples-1"
# OpenBars.add_all updates a window's bar from arrays when a call has at least this many trades
# and they hold at least this many trades per window on average; otherwise trade by trade, which
# costs less for a few trades than the arrays' fixed costs (docs/performance.md, "Fifteenth round").
COLUMNAR_MIN_TRADES = 16
TRADES_PER_WINDOW = 8


def window_start_ms(trade_time_ms: int, interval_s: int) -> int:
    """Start of the tumbling window of `interval_s` seconds holding this instant (epoch-aligned)."""
    size = interval_s * 1000
    return trade_time_ms - trade_time_ms % size


def sweep_instant(window_end: int) -> int:
    """The sweep timer that closes a window ending at `window_end`: the last millisecond of the
    SWEEP_MS slot holding the window's last millisecond (minute windows: their own last one)."""
    return ((window_end - 1) // SWEEP_MS + 1) * SWEEP_MS - 1


def window_end_ms(start_ms: int, interval_s: int) -> int:
    """First instant after the window; its last instant, and the event-time timer's, is this - 1."""
    return start_ms + interval_s * 1000


def _sum_after(total: float, values: np.ndarray) -> float:
    """total + values[0] + values[1] + ..., added left to right (the rounding of `+=` in a loop)."""
    if not len(values):
        return total
    return float(np.add.accumulate(np.concatenate(((total,), values)))[-1])


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
        _, trade_id, price, qty, time_ms, _, is_buyer_maker = trade  # once: runs twice per trade
        key = (time_ms, trade_id)
        if key < self.first[0]:
            self.first = (key, price)
        if key > self.last[0]:
            self.last = (key, price)
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        self.volume += qty
        self.quote_volume += price * qty
        self.trade_count += 1
        if is_buyer_maker:
            self.sell_volume += qty
        else:
            self.buy_volume += qty

    def row(self, symbol: str, interval_s: int, start_ms: int) -> tuple:
        """The bars table row (store.TABLE_COLUMNS["bars"] order)."""
        return (symbol, interval_s, start_ms, self.first[1], self.high, self.low, self.last[1], self.volume,
                self.quote_volume, self.quote_volume / self.volume, self.trade_count, self.buy_volume,
                self.sell_volume)

    # Pickled into Flink state (inside OpenBars' plain tuples): slots need explicit state.
    def __getstate__(self):
        return (self.first, self.last, self.high, self.low, self.volume, self.quote_volume, self.trade_count,
                self.buy_volume, self.sell_volume)

    def __setstate__(self, state):
        (self.first, self.last, self.high, self.low, self.volume, self.quote_volume, self.trade_count,
         self.buy_volume, self.sell_volume) = state

    @classmethod
    def restored(cls, state: tuple) -> "Bar":
        bar = cls.__new__(cls)
        bar.__setstate__(state)
        return bar


class OpenBars(StdlibPickled):
    """One symbol's bars whose windows the watermark has not closed yet: {(interval_s, start_ms): Bar}.

    `add` puts a trade into every bar it belongs to and returns the intervals whose window had
    already closed (the trade is late for those); `close_until` hands out, and forgets, every
    bar whose window ended at or before a watermark. Kept in keyed state, one per symbol.

    When bars close: the operator calls `close_until` with the current watermark whenever the
    symbol trades (`due` says, in O(1), whether anything has ended), and an event-time timer
    sweeps the symbol's bars on a SWEEP_MS grid for when it stops trading. One timer per window
    would be one Python -> Java registration and one timer firing per 1-second bar: with 2,000
    sparse symbols, about two timer crossings per trade (docs/performance.md). On the grid a
    symbol has at most one pending timer per SWEEP_MS of event time; `add` returns the instants
    not yet registered, and `swept` forgets those a timer has fired.
    """

    __slots__ = ("bars", "next_end", "timers")

    def __init__(self):
        self.bars: dict[tuple[int, int], Bar] = {}
        self.next_end = NEVER   # earliest end of an open window
        self.timers: set = set()  # sweep instants registered and not fired yet

    def add(self, trade: Trade, watermark_ms: int) -> tuple[list[int], list[int]]:
        """Adds the trade; returns (sweep timer instants to register, intervals it was late for)."""
        new_timers, late = [], []
        time_ms, bars = trade.trade_time_ms, self.bars
        for interval_s in BAR_INTERVALS_S:  # _join's steps inline: this runs for most trades of sparse symbols
            start = window_start_ms(time_ms, interval_s)
            end = window_end_ms(start, interval_s)
            if end - 1 <= watermark_ms:
                late.append(interval_s)
                continue
            bar = bars.get((interval_s, start))
            if bar is None:
                bars[(interval_s, start)] = Bar(trade)
                self._opened(end, new_timers)
            else:
                bar.add(trade)
        return new_timers, late

    def add_all(self, chunk, watermark_ms: int) -> tuple[list[int], dict[int, list[int]]]:
        """Adds a symbol's trades of one call (a scoring_batch.Chunk: its symbol, its trades as
        columns and, made once when asked for, as tuples), in arrival order, all against one
        watermark (trade ids increasing: repeats are dead letters before bars). Returns (sweep
        timer instants to register, {row: intervals it was late for}).

        The bars come out equal to `add` one trade at a time, bit for bit. Per interval, a window
        that holds many of the trades is updated once, from arrays: high and low are a max and a
        min, open and close the least and greatest (time, id), and the sums are accumulated in
        arrival order (np.add.accumulate adds left to right, as `Bar.add` does). Trade by trade,
        a busy symbol spent about 5 µs per trade here; where the trades are spread over nearly
        as many windows as there are trades (a sparse symbol), they go one by one."""
        new_timers: list = []
        late: dict[int, list[int]] = {}
        symbol, trades = chunk.symbol, chunk.columns
        times, count = trades.trade_times, len(chunk)
        if count < COLUMNAR_MIN_TRADES:
            for row, trade in enumerate(chunk.trades):
                timers, missed = self.add(Trade._make(trade), watermark_ms)
                new_timers += timers
                if missed:
                    late[row] = missed
            return new_timers, late
        for interval_s in BAR_INTERVALS_S:
            size = interval_s * 1000
            starts = times - times % size
            order = np.argsort(starts, kind="stable")   # each window's trades together, in arrival order
            ordered = starts[order]
            bounds = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
            if len(bounds) + 1 > count // TRADES_PER_WINDOW:
                for row, trade in enumerate(chunk.trades):
                    missed = []
                    self._join(interval_s, Trade._make(trade), watermark_ms, new_timers, missed)
                    if missed:
                        late.setdefault(row, []).extend(missed)
                continue
            for rows in np.split(order, bounds):
                start = int(starts[rows[0]])
                if start + size - 1 <= watermark_ms:
                    for row in rows.tolist():
                        late.setdefault(row, []).append(interval_s)
                    continue
                self._join_rows(interval_s, start, rows, symbol, trades, new_timers)
        return new_timers, late

    def _join(self, interval_s: int, trade: Trade, watermark_ms: int, new_timers: list, late: list) -> None:
        """`add` for one interval."""
        start = window_start_ms(trade.trade_time_ms, interval_s)
        end = window_end_ms(start, interval_s)
        if end - 1 <= watermark_ms:
            late.append(interval_s)
            return
        bar = self.bars.get((interval_s, start))
        if bar is None:
            self.bars[(interval_s, start)] = Bar(trade)
            self._opened(end, new_timers)
        else:
            bar.add(trade)

    def _opened(self, end: int, new_timers: list) -> None:
        self.next_end = min(self.next_end, end)
        sweep = sweep_instant(end)
        if sweep not in self.timers:
            self.timers.add(sweep)
            new_timers.append(sweep)

    def _join_rows(self, interval_s: int, start: int, rows: np.ndarray, symbol: str, trades: TradeColumns,
                   new_timers: list) -> None:
        """One window's trades (rows, in arrival order) into its bar, as `Bar.add` would one by one."""
        ids, times, prices, qtys, makers = trades.ids, trades.trade_times, trades.prices, trades.qtys, trades.makers
        bar = self.bars.get((interval_s, start))
        if bar is None:
            bar = self.bars[(interval_s, start)] = Bar(trades.trade(symbol, int(rows[0])))
            self._opened(window_end_ms(start, interval_s), new_timers)
            rows = rows[1:]
            if not len(rows):
                return
        price, qty, maker = prices[rows], qtys[rows], makers[rows]
        by_key = np.lexsort((ids[rows], times[rows]))   # (time, id) order; ids are unique
        first, last = rows[by_key[0]], rows[by_key[-1]]
        first_key, last_key = (int(times[first]), int(ids[first])), (int(times[last]), int(ids[last]))
        if first_key < bar.first[0]:
            bar.first = (first_key, float(prices[first]))
        if last_key > bar.last[0]:
            bar.last = (last_key, float(prices[last]))
        bar.high = max(bar.high, float(price.max()))
        bar.low = min(bar.low, float(price.min()))
        bar.volume = _sum_after(bar.volume, qty)
        bar.quote_volume = _sum_after(bar.quote_volume, price * qty)
        bar.trade_count += len(rows)
        bar.buy_volume = _sum_after(bar.buy_volume, qty[~maker])
        bar.sell_volume = _sum_after(bar.sell_volume, qty[maker])

    def due(self, watermark_ms: int) -> bool:
        """Whether a window has ended at or before the watermark."""
        return self.next_end - 1 <= watermark_ms

    def close_until(self, watermark_ms: int, symbol: str) -> list[tuple]:
        """Rows of every bar whose window ended at or before the watermark, by interval, oldest first."""
        if not self.due(watermark_ms):
            return []
        due = sorted(key for key in self.bars if window_end_ms(key[1], key[0]) - 1 <= watermark_ms)
        rows = [self.bars.pop(key).row(symbol, key[0], key[1]) for key in due]
        self.next_end = self._earliest_end()
        return rows

    def _earliest_end(self) -> int:
        return min((window_end_ms(start, interval) for interval, start in self.bars), default=NEVER)

    def swept(self, timer_ms: int) -> None:
        """Forgets the sweep timers at or before `timer_ms` (they have fired)."""
        self.timers = {t for t in self.timers if t > timer_ms}

    def __getstate__(self):
        # The bars as plain tuples: pickled as Bar objects they cost about 7 µs each, a sparse
        # symbol's two bars most of its record's write-back (docs/performance.md, "Nineteenth round").
        return OPEN_BARS_LAYOUT, [(key, bar.__getstate__()) for key, bar in self.bars.items()], self.next_end, \
            self.timers

    def __setstate__(self, state):
        if len(state) == 2:  # saved before the sweep grid: (bars, last trade id), one timer per window
            self.bars, self.timers = state[0], set()
            self.next_end = self._earliest_end()
            return
        if len(state) == 3:  # saved with Bar objects, before the nineteenth round
            self.bars, self.next_end, self.timers = state
            return
        _, bars, self.next_end, self.timers = state
        self.bars = {key: Bar.restored(values) for key, values in bars}
