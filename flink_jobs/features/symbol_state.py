"""Everything the job remembers about one symbol, and the features of a trade against it.

One definition for streaming and training: the Flink job keeps one SymbolState per symbol in keyed
state and calls `observe_all` with each batch of a symbol's trades; `models/` replays historical
trades through the same function (`observe_in_order`) to build its feature matrix, so the two
cannot drift apart. The per-trade recurrences are compiled (flink_jobs/features/kernel.py).

Features are computed against the windows *before* the trade joins them, so a spike cannot
dampen its own score. FEATURE_NAMES is the order of the model's input columns.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from flink_jobs.features.kernel_cache import load_kernel
from flink_jobs.state_pickling import StdlibPickled
from flink_jobs.trade_block import from_tuples
from flink_jobs.trades import Trade

kernel = load_kernel()  # flink_jobs/features/kernel.py, compiled once per machine (kernel_cache.py)

VWAP_WINDOW = 100          # trades in the VWAP the price is compared with
VOLUME_WINDOW = 50         # trades in the median size a trade's size is compared with
LOG_SIZE_WINDOW = 100      # trades in the size distribution the volume z-score measures against
SIZE_TAIL_QUANTILE = 0.95  # its upper-tail spread: from the median to this quantile...
SIZE_TAIL_NORMAL_Z = 1.6449  # ...which lies this many standard deviations up in a normal
VELOCITY_WINDOW = 20       # trades back for the price velocity
IMBALANCE_WINDOW = 50      # trades in the buy/sell imbalance
RATE_SPAN_MS = 1000        # the trade rate is trades in the trailing second...
RATE_BASELINE_TAU_S = 60.0  # ...against the symbol's trades per second, weighted over ~1 minute
ROBUST_REFRESH = 50        # trades between recomputations of the return median and MAD
MIN_VELOCITY_SPAN_S = 0.1  # a burst inside one millisecond is not an infinite velocity
MAD_TO_STD = 1.4826        # MAD x this = standard deviation for normal data
MIN_RETURN_STD = 1e-5      # 0.1 bp: below this, return z-scores measure rounding, not the market

RATE_OVERDISPERSION = 8.0  # variance / mean of trades per second (measured 3-18, docs/detection.md)
RATE_Z_PRIOR = 16.0        # added to the rate z-score's variance: an idle market needs ~14 trades

# Bump whenever a feature's *definition* changes (names alone would not show it): a model trained on
# another version is refused. 2: time-weighted rate baseline, upper-tail volume z, duration-scaled
# return z-scores.
FEATURE_SET_VERSION = 2

FEATURE_NAMES = (
    "z_price", "z_return", "robust_z_return", "price_change_pct", "time_gap_sec",
    "vwap_deviation_pct", "volume_spike_ratio", "volume_z", "price_velocity_pct_s", "trade_rate_burst",
    "rate_z", "buy_sell_imbalance",
)
FEATURE_COUNT = len(FEATURE_NAMES)
HISTORY = 17  # TradeFeatures' one integer field


class TradeFeatures(NamedTuple):
    z_price: float               # price against the rolling mean/std of the last N prices
    z_return: float              # log return against the rolling mean/std of the last N returns
    robust_z_return: float       # log return against the rolling median/MAD of the last N returns
    price_change_pct: float      # % change from the previous trade
    time_gap_sec: float          # seconds since the previous trade (0 for the first)
    vwap_deviation_pct: float    # % away from the VWAP of the last 100 trades
    volume_spike_ratio: float    # size / median size of the last 50 trades
    volume_z: float              # log size against the median and upper tail of the last 100 log sizes
    price_velocity_pct_s: float  # % change over the last 20 trades per second they took
    trade_rate_burst: float      # trades in the last second / its own EWMA baseline
    rate_z: float                # (trades in the last second - baseline) / sqrt(8 baseline + 16)
    buy_sell_imbalance: float    # (taker buy - taker sell) / total size, last 50 trades, in [-1, 1]
    # context, stored with trades and anomalies
    log_return: float
    price_mean: float
    price_std: float
    return_mean: float
    return_std: float
    history: int                 # trades in the price window before this one

    def vector(self) -> tuple[float, ...]:
        """The model's input columns, in FEATURE_NAMES order (a tuple: numpy reads it as fast as a
        list, and a slice of a tuple is one copy less)."""
        return self[:FEATURE_COUNT]


class SymbolState(StdlibPickled):
    """One symbol's windows, as the compiled loop keeps them (flink_jobs/features/kernel.py): a
    float array and an integer array laid out by `Layout`, and a ring of the trade times in the
    trailing RATE_SPAN_MS. It pickles as three bytes blocks, the cheapest form for Flink's state
    writes (state_pickling.py)."""
    __slots__ = ("window", "floats", "ints", "times")

    def __init__(self, window_size: int):
        if window_size < 1:
            raise ValueError("capacity must be at least 1")
        self.window = window_size
        self.floats = np.zeros(Layout.of(window_size).float_size)
        self.ints = np.zeros(kernel.I_SCALARS + VELOCITY_WINDOW, dtype=np.int64)
        self.times = np.zeros(INITIAL_TIMES, dtype=np.int64)
        self.floats[kernel.F_RATE_TAU_MS] = RATE_BASELINE_TAU_S * 1000.0
        self.ints[kernel.I_ROBUST_AGE] = ROBUST_REFRESH  # refresh on the first use
        self.ints[kernel.I_LAST_TRADE_ID] = -1

    @property
    def last_trade_id(self) -> int:
        return int(self.ints[kernel.I_LAST_TRADE_ID])

    @property
    def trades_seen(self) -> int:
        return int(self.ints[kernel.I_TRADES_SEEN])

    def is_replay_of_seen_trade(self, trade: Trade) -> bool:
        """Binance trade ids grow by one per symbol, so an id at or below the last is a repeat."""
        return trade.trade_id <= self.last_trade_id

    def returns(self) -> np.ndarray:
        """The return window in storage order (a copy)."""
        layout = Layout.of(self.window)
        return self.floats[layout.returns:layout.returns + int(self.ints[kernel.I_R_N])].copy()

    def __getstate__(self):
        # A window that is not full holds its values at the start of its ring: only those are saved.
        f, i, layout = self.floats, self.ints, Layout.of(self.window)
        floats = b"".join((f[:layout.prices].tobytes(),
                           f[layout.prices:layout.prices + i[kernel.I_P_N]].tobytes(),
                           f[layout.returns:layout.returns + i[kernel.I_R_N]].tobytes()))
        return STATE_LAYOUT, self.window, floats, i.tobytes(), self.times.tobytes()

    def __setstate__(self, state):
        if state[0] != STATE_LAYOUT:
            _load_interpreted_layout(self, state)
            return
        _, self.window, floats, ints, times = state
        layout = Layout.of(self.window)
        self.ints = np.frombuffer(bytearray(ints), dtype=np.int64)
        self.times = np.frombuffer(bytearray(times), dtype=np.int64)
        saved = np.frombuffer(floats, dtype=np.float64)
        prices, returns = int(self.ints[kernel.I_P_N]), int(self.ints[kernel.I_R_N])
        self.floats = np.zeros(layout.float_size)
        self.floats[:layout.prices] = saved[:layout.prices]
        self.floats[layout.prices:layout.prices + prices] = saved[layout.prices:layout.prices + prices]
        self.floats[layout.returns:layout.returns + returns] = saved[layout.prices + prices:]

    def _recompute_due(self) -> None:
        """RollingStats' exact recomputation of a window's mean and M2, in Python: math.fsum rounds
        the sum once, which the compiled loop does not reproduce (kernel.RECOMPUTE)."""
        f, i, layout = self.floats, self.ints, Layout.of(self.window)
        for start, mean_at, m2_at, n_at, updates_at in (
                (layout.prices, kernel.F_P_MEAN, kernel.F_P_M2, kernel.I_P_N, kernel.I_P_UPD),
                (layout.returns, kernel.F_R_MEAN, kernel.F_R_M2, kernel.I_R_N, kernel.I_R_UPD)):
            if i[updates_at] >= self.window:
                n = int(i[n_at])
                values = f[start:start + n].tolist()
                mean = math.fsum(values) / n
                f[mean_at] = mean
                f[m2_at] = math.fsum((v - mean) ** 2 for v in values)
                i[updates_at] = 0

    def _grow_times(self) -> None:
        """Twice the room in the ring of trade times, oldest first (kernel.GROW)."""
        head = int(self.ints[kernel.I_RT_HEAD])
        grown = np.zeros(2 * len(self.times), dtype=np.int64)
        grown[:len(self.times)] = np.concatenate((self.times[head:], self.times[:head]))
        self.times = grown
        self.ints[kernel.I_RT_HEAD] = 0


# The pickled form's first field. The interpreted layout before it pickled a tuple of 18 objects.
STATE_LAYOUT = "symbol-state-arrays-1"
INITIAL_TIMES = 64  # trade times in the trailing second before the ring grows


class Layout(NamedTuple):
    """Offsets of the windows in a SymbolState's float array, for one price-window size."""
    window: int
    prices: int
    returns: int
    quote_volume: int
    base_volume: int
    sizes: int
    sizes_sorted: int
    log_sizes: int
    log_sizes_sorted: int
    recent_prices: int
    signed_size: int
    abs_size: int
    float_size: int
    array: np.ndarray  # what the compiled loop reads: these offsets, then the windows' lengths

    @staticmethod
    def of(window: int) -> "Layout":
        layout = _LAYOUTS.get(window)
        if layout is None:
            layout = _LAYOUTS[window] = _make_layout(window)
        return layout


_LAYOUTS: dict = {}


def _make_layout(window: int) -> Layout:
    # The price and return windows last, so that a state whose windows are not full yet pickles
    # without their empty tails (SymbolState.__getstate__): a sparse symbol's state stays small.
    sizes = {"quote_volume": VWAP_WINDOW, "base_volume": VWAP_WINDOW, "sizes": VOLUME_WINDOW,
             "sizes_sorted": VOLUME_WINDOW, "log_sizes": LOG_SIZE_WINDOW, "log_sizes_sorted": LOG_SIZE_WINDOW,
             "recent_prices": VELOCITY_WINDOW, "signed_size": IMBALANCE_WINDOW, "abs_size": IMBALANCE_WINDOW,
             "prices": window, "returns": window}
    offsets, at = {}, kernel.F_SCALARS
    for name, size in sizes.items():
        offsets[name] = at
        at += size
    ordered = [offsets[name] for name in Layout._fields[1:12]]
    array = np.array([window, *ordered, window, VWAP_WINDOW, VOLUME_WINDOW, LOG_SIZE_WINDOW, VELOCITY_WINDOW,
                      IMBALANCE_WINDOW, RATE_SPAN_MS, ROBUST_REFRESH], dtype=np.int64)
    return Layout(window, *ordered, at, array)


# The definitions' float constants, in the order the compiled loop reads them.
KERNEL_CONSTANTS = np.array([SIZE_TAIL_QUANTILE, SIZE_TAIL_NORMAL_Z, MIN_VELOCITY_SPAN_S, MAD_TO_STD, MIN_RETURN_STD,
                             RATE_OVERDISPERSION, RATE_Z_PRIOR])


def _load_interpreted_layout(state: SymbolState, saved: tuple) -> None:
    """A state pickled by the interpreted layout (savepoints before the compiled loop): its window
    objects (features/rolling.py, features/windows.py) copied into the arrays, each ring keeping the
    order it had, so the features carry on bit for bit (tests/test_state_pickling.py)."""
    (prices, returns, quote_volume, base_volume, sizes, log_sizes, recent_prices, rate, rate_baseline,
     signed_size, abs_size, return_median, return_mad, robust_age, last_price, last_trade_id,
     last_trade_time_ms, trades_seen) = saved
    SymbolState.__init__(state, prices.capacity)
    f, i, layout = state.floats, state.ints, Layout.of(prices.capacity)
    for stats, start, mean_at, m2_at, n_at, head_at, updates_at in (
            (prices, layout.prices, kernel.F_P_MEAN, kernel.F_P_M2, kernel.I_P_N, kernel.I_P_HEAD, kernel.I_P_UPD),
            (returns, layout.returns, kernel.F_R_MEAN, kernel.F_R_M2, kernel.I_R_N, kernel.I_R_HEAD, kernel.I_R_UPD)):
        f[start:start + len(stats.values)] = stats.values
        f[mean_at], f[m2_at] = stats.mean, stats.m2
        i[n_at], i[head_at], i[updates_at] = len(stats.values), stats.head, stats.updates_since_exact
    for rolling, start, total_at, n_at, updates_at in (
            (quote_volume, layout.quote_volume, kernel.F_QV_TOTAL, kernel.I_QV_N, kernel.I_QV_UPD),
            (base_volume, layout.base_volume, kernel.F_BV_TOTAL, kernel.I_BV_N, kernel.I_BV_UPD),
            (signed_size, layout.signed_size, kernel.F_SS_TOTAL, kernel.I_SS_N, kernel.I_SS_UPD),
            (abs_size, layout.abs_size, kernel.F_AS_TOTAL, kernel.I_AS_N, kernel.I_AS_UPD)):
        f[start:start + len(rolling.values)] = list(rolling.values)  # oldest first, at the ring's head 0
        f[total_at], i[n_at], i[updates_at] = rolling.total, len(rolling.values), rolling.updates
    for window, start, sorted_start, n_at in (
            (sizes, layout.sizes, layout.sizes_sorted, kernel.I_SZ_N),
            (log_sizes, layout.log_sizes, layout.log_sizes_sorted, kernel.I_LS_N)):
        values = list(window if isinstance(window, deque) else window.values)  # a deque before log sizes kept order
        f[start:start + len(values)] = values
        f[sorted_start:sorted_start + len(values)] = sorted(values)
        i[n_at] = len(values)
    f[layout.recent_prices:layout.recent_prices + len(recent_prices)] = [price for _, price in recent_prices]
    i[kernel.I_SCALARS:kernel.I_SCALARS + len(recent_prices)] = [time_ms for time_ms, _ in recent_prices]
    i[kernel.I_RP_N] = len(recent_prices)
    times = list(rate.times)
    state.times = np.zeros(max(INITIAL_TIMES, 2 * len(times)), dtype=np.int64)
    state.times[:len(times)] = times
    i[kernel.I_RT_N] = len(times)
    f[kernel.F_RATE_TAU_MS], f[kernel.F_RATE_LEVEL] = rate_baseline.tau_ms, rate_baseline.level
    if rate_baseline.first_ms is not None:
        i[kernel.I_RATE_STARTED] = 1
        i[kernel.I_RATE_FIRST_MS], i[kernel.I_RATE_LAST_MS] = rate_baseline.first_ms, rate_baseline.last_ms
    f[kernel.F_RET_MEDIAN], f[kernel.F_RET_MAD], i[kernel.I_ROBUST_AGE] = return_median, return_mad, robust_age
    if last_price is not None:
        f[kernel.F_LAST_PRICE], i[kernel.I_HAS_LAST_PRICE] = last_price, 1
    i[kernel.I_LAST_TRADE_ID], i[kernel.I_LAST_TIME], i[kernel.I_TRADES_SEEN] = \
        last_trade_id, last_trade_time_ms, trades_seen


class Repeated(NamedTuple):
    """observe_all's answer for a trade whose id is not above the last seen: the state is as it was."""
    last_seen: int


def observe_all(state: SymbolState, trades: Sequence[Trade]) -> list:
    """Features of each trade against the windows before it, which it then joins; Repeated for a
    trade whose id is not above the last seen then (is_replay_of_seen_trade). observe_columns
    with the answers as named tuples."""
    if not trades:
        return []
    columns = from_tuples(trades)
    out, status = observe_columns(state, columns.ids, columns.prices, columns.qtys, columns.trade_times,
                                  columns.makers)
    make = TradeFeatures._make
    features: list = []
    for row, skipped in zip(out.tolist(), status.tolist()):
        row[HISTORY] = int(row[HISTORY])
        features.append(Repeated(row[HISTORY]) if skipped else make(row))
    return features


def observe_columns(state: SymbolState, ids: np.ndarray, prices: np.ndarray, qtys: np.ndarray,
                    times: np.ndarray, makers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features, status) of a symbol's trades given as columns (trade_block.TradeColumns): row t of the
    (n, 18) float matrix holds TradeFeatures' fields of trade t in order (`history` as a float),
    and status[t] is kernel.SKIPPED for a trade whose id is not above the last seen (its row's last
    column is that id; the state is untouched by it).

    One compiled call covers the trades (kernel.observe_batch): the features were the hottest
    code of the job, 11-13 µs per trade interpreted (docs/performance.md). Every value is the same
    operation in the same order as the interpreted definition, so features are equal bit for bit
    (tests/test_features.py holds them against digests recorded with it, and against numpy
    references of each definition)."""
    n = len(ids)
    out = np.empty((n, kernel.OUT_COLUMNS))
    status = np.zeros(n, dtype=np.uint8)
    layout = Layout.of(state.window).array
    begin = 0
    while n:
        begin, why = kernel.observe_batch(state.floats, state.ints, state.times, ids, prices, qtys, times, makers,
                                          begin, out, status, layout, KERNEL_CONSTANTS)
        if why == kernel.DONE:
            break
        if why == kernel.RECOMPUTE:
            state._recompute_due()
        else:
            state._grow_times()
    return out, status


def observe(state: SymbolState, trade: Trade) -> TradeFeatures:
    """Features of one trade (observe_all of one); the caller has checked is_replay_of_seen_trade."""
    features = observe_all(state, (trade,))[0]
    if type(features) is Repeated:
        raise ValueError(f"trade id {trade.trade_id} is not above the last seen, {state.last_trade_id}")
    return features


def observe_in_order(states: dict, trades: Iterable[Trade], window_size: int,
                     chunk: int = 4096) -> Iterator[tuple[Trade, TradeFeatures | Repeated]]:
    """(trade, observe_all's answer) for a stream of many symbols' trades, in input order, with
    `states` (symbol -> SymbolState) made as symbols appear. The trades are observed `chunk` at a
    time, grouped by symbol, one compiled call per symbol: a symbol's features depend on its own
    trades alone, in their order, so the grouping changes nothing but the number of calls."""
    pending: list = []
    for trade in trades:
        pending.append(trade)
        if len(pending) >= chunk:
            yield from _observe_grouped(states, pending, window_size)
            pending = []
    if pending:
        yield from _observe_grouped(states, pending, window_size)


def _observe_grouped(states: dict, trades: list, window_size: int):
    rows_by_symbol: dict[str, list] = {}
    for row, trade in enumerate(trades):
        rows_by_symbol.setdefault(trade.symbol, []).append(row)
    answers: list = [None] * len(trades)
    for symbol, rows in rows_by_symbol.items():
        state = states.get(symbol)
        if state is None:
            state = states[symbol] = SymbolState(window_size)
        for row, answer in zip(rows, observe_all(state, [trades[row] for row in rows])):
            answers[row] = answer
    return zip(trades, answers)
