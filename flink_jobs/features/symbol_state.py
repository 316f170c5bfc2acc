"""Everything the job remembers about one symbol, and the features of a trade against it.

One definition for streaming and training: the Flink job keeps one SymbolState per symbol in keyed
state and calls `observe` per trade; `models/` replays historical trades through the same
`observe` to build its feature matrix, so the two cannot drift apart.

Features are computed against the windows *before* the trade joins them, so a spike cannot
dampen its own score. FEATURE_NAMES is the order of the model's input columns.
"""
from __future__ import annotations

import math
from array import array
from collections import deque
from typing import NamedTuple

import numpy as np

from flink_jobs.features.rolling import RollingStats
from flink_jobs.features.windows import DecayingRate, EventsInLast, RollingMedian, RollingSum
from flink_jobs.state_pickling import StdlibPickled
from flink_jobs.trades import Trade

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
NUMPY_FROM = 200           # returns in the window from which numpy computes the median and MAD faster
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
    __slots__ = ("prices", "returns", "quote_volume", "base_volume", "sizes", "log_sizes", "recent_prices",
                 "rate", "rate_baseline", "signed_size", "abs_size", "return_median", "return_mad",
                 "robust_age", "last_price", "last_trade_id", "last_trade_time_ms", "trades_seen")

    def __init__(self, window_size: int):
        self.prices = RollingStats(window_size)
        self.returns = RollingStats(window_size)
        self.quote_volume = RollingSum(VWAP_WINDOW)
        self.base_volume = RollingSum(VWAP_WINDOW)
        self.sizes = RollingMedian(VOLUME_WINDOW)
        self.log_sizes = RollingMedian(LOG_SIZE_WINDOW)
        self.recent_prices: deque = deque(maxlen=VELOCITY_WINDOW)  # (time ms, price)
        self.rate = EventsInLast(RATE_SPAN_MS)
        self.rate_baseline = DecayingRate(RATE_BASELINE_TAU_S)
        self.signed_size = RollingSum(IMBALANCE_WINDOW)
        self.abs_size = RollingSum(IMBALANCE_WINDOW)
        self.return_median = 0.0
        self.return_mad = 0.0
        self.robust_age = ROBUST_REFRESH  # refresh on the first use
        self.last_price: float | None = None
        self.last_trade_id = -1
        self.last_trade_time_ms = 0
        self.trades_seen = 0

    def is_replay_of_seen_trade(self, trade: Trade) -> bool:
        """Binance trade ids grow by one per symbol, so an id at or below the last is a repeat."""
        return trade.trade_id <= self.last_trade_id

    def __getstate__(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state):
        for name, value in zip(self.__slots__, state):
            setattr(self, name, value)
        if isinstance(self.log_sizes, deque):  # saved before log sizes kept their order
            logs, self.log_sizes = self.log_sizes, RollingMedian(LOG_SIZE_WINDOW)
            for value in logs:
                self.log_sizes.push(value)


def _robust_z(state: SymbolState, log_return: float) -> float:
    """(r - median) / (1.4826 MAD) over the return window, refreshed every ROBUST_REFRESH trades.

    Unlike the standard deviation, median and MAD are not inflated by the spikes we are looking
    for, so an earlier spike in the window does not mask the next one. With tick-sized prices more
    than half the returns are often exactly 0 and the MAD is 0; the mean absolute deviation
    (scaled to a standard deviation) stands in then.
    """
    values = state.returns.values
    if len(values) < 2:
        return 0.0
    if state.robust_age >= ROBUST_REFRESH:
        median_and_mad = _median_and_mad_numpy if len(values) >= NUMPY_FROM else _median_and_mad
        state.return_median, state.return_mad = median_and_mad(values)
        state.robust_age = 0
    state.robust_age += 1
    scale = max(MAD_TO_STD * state.return_mad, MIN_RETURN_STD)
    return (log_return - state.return_median) / scale


def _median_and_mad(values) -> tuple[float, float]:
    """Median and MAD of the values; the MAD's stand-in when it is 0 (see _robust_z)."""
    median = _median_of_sorted(sorted(values))
    mad = _median_of_sorted(sorted(abs(v - median) for v in values))
    if mad <= 0.0:
        mad = _mad_stand_in(sum(abs(v - median) for v in values), len(values))
    return median, mad


def _median_and_mad_numpy(values: array) -> tuple[float, float]:
    """The same, bit for bit, with numpy over the window's own buffer (no copy): 25 µs against
    139 µs with 1,000 returns; below NUMPY_FROM values numpy's fixed cost loses."""
    window = np.frombuffer(values, dtype=np.float64)
    median = float(np.median(window))
    deviations = np.abs(window - median)
    del window  # the array cannot grow again while a view of its buffer is alive
    mad = float(np.median(deviations))
    if mad <= 0.0:
        # summed in order, as Python's sum does: numpy's pairwise sum rounds differently
        mad = _mad_stand_in(sum(deviations.tolist()), len(values))
    return median, mad


def _mad_stand_in(total_abs_deviation: float, n: int) -> float:
    """The mean absolute deviation, scaled so that MAD_TO_STD x it is a standard deviation again
    (normal data: std = 1.2533 x mean absolute deviation), for when more than half the returns
    are 0 and the MAD with them."""
    return total_abs_deviation / n * 1.2533 / MAD_TO_STD


def _median_of_sorted(ordered: list[float]) -> float:
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def _volume_z(state: SymbolState, qty: float) -> float:
    """How far up the symbol's size distribution a trade's log size lies, in standard deviations.

    Logs, because sizes are heavy-tailed and logs of sizes far less so. Scaled by the *upper*
    tail (median to 95th percentile of the last 100 log sizes), because that is the side a volume
    spike is on and its weight differs by market: real trades have whales every few minutes (a
    30x-median trade is common in XRPETH) where other streams have a light upper tail; a
    median/MAD scale sees only the middle of the distribution and calls both the same.
    """
    logs = state.log_sizes.ordered
    if len(logs) < 5:
        return 0.0
    median = _median_of_sorted(logs)
    spread = _quantile_of_sorted(logs, SIZE_TAIL_QUANTILE) - median
    if spread <= 1e-12:
        return 0.0
    return (math.log(qty) - median) / (spread / SIZE_TAIL_NORMAL_Z)


def _quantile_of_sorted(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    position = q * (len(ordered) - 1)
    low = int(position)
    if low + 1 >= len(ordered):
        return ordered[-1]
    return ordered[low] + (ordered[low + 1] - ordered[low]) * (position - low)


def _rate_z(count: int, baseline: float | None) -> float:
    """Z-score of the trailing-second trade count against its baseline (trades per second over
    about the last minute of event time). Trades cluster: one taker order filled by many makers
    prints many trades at once, so counts vary far more than a Poisson count would, and the
    variance is RATE_OVERDISPERSION times the mean. The prior keeps an idle market (baseline
    near 0) from calling a handful of trades a burst."""
    if baseline is None:
        return 0.0
    return (count - baseline) / math.sqrt(RATE_OVERDISPERSION * baseline + RATE_Z_PRIOR)


def _duration_scale(time_gap_sec: float, rate_per_s: float | None) -> float:
    """How many typical inter-trade gaps this trade's gap spans, square-rooted (at least 1).
    Typical as of the previous trade: a silence must not shorten the gap it is measured against.

    The return window mixes returns over typical gaps. A price diffuses: over k typical gaps its
    variance grows about k times, so a 0.2% move after a minute of silence is ordinary where the
    same move between two trades 0.1 s apart is not. Dividing the return z-scores by sqrt(k) asks
    whether the move is unusual *for the time it took*. Never below 1, so fast trades keep their
    full score (a burst of quick moves is exactly what should stand out)."""
    if rate_per_s is None or rate_per_s <= 0.0:
        return 1.0
    return math.sqrt(max(1.0, time_gap_sec * rate_per_s))


def _velocity(state: SymbolState, trade: Trade) -> float:
    window = state.recent_prices
    if not window:
        return 0.0
    then_ms, then_price = window[0]
    span_s = max((trade.trade_time_ms - then_ms) / 1000.0, MIN_VELOCITY_SPAN_S)
    return (trade.price / then_price - 1.0) * 100.0 / span_s


def observe(state: SymbolState, trade: Trade) -> TradeFeatures:
    """Features of `trade` against the current windows, then adds the trade to them.

    The hottest code of the job (16 µs per trade before the sixth round, a third of a Python
    worker's time), written for CPython: a Python call costs about 0.1 µs and this made about a
    hundred per trade, so the trade is unpacked once, each window's z-score comes with its
    standard deviation in one call (RollingStats.zscore_and_std, with conditionals for max())
    and the result is built positionally. Every value is still the same operation in the same
    order as before, so features are equal bit for bit (tests/test_features.py holds them against
    numpy references and against digests recorded before the change).
    """
    _, _, price, qty, time_ms, _, is_buyer_maker = trade
    last_price = state.last_price
    first = last_price is None
    log_return = 0.0 if first else math.log(price / last_price)
    base_total = state.base_volume.total
    vwap = state.quote_volume.total / base_total if base_total > 0 else price
    median_size = state.sizes.median

    trades_last_second = state.rate.add(time_ms)
    rate_baseline = state.rate_baseline
    rate_per_s = rate_baseline.per_second(time_ms)
    baseline = None if rate_per_s is None else rate_per_s * RATE_SPAN_MS / 1000.0
    time_gap_sec = 0.0 if first else (time_ms - state.last_trade_time_ms) / 1000.0
    duration = _duration_scale(time_gap_sec, rate_baseline.per_second_at_last_event())
    state.signed_size.push(-qty if is_buyer_maker else qty)  # buyer is maker: the taker sold
    state.abs_size.push(qty)

    prices, returns = state.prices, state.returns
    z_price, price_std = prices.zscore_and_std(price, MIN_RETURN_STD * prices.mean)  # same 0.1 bp floor
    z_return, return_std = returns.zscore_and_std(log_return, MIN_RETURN_STD)
    abs_total = state.abs_size.total
    features = TradeFeatures(  # positional, in field order: keywords cost a dict per trade
        z_price,
        z_return / duration,
        _robust_z(state, log_return) / duration,
        0.0 if first else (price / last_price - 1.0) * 100.0,
        time_gap_sec,
        (price / vwap - 1.0) * 100.0,
        qty / median_size if median_size > 0 else 1.0,
        _volume_z(state, qty),
        _velocity(state, trade),
        trades_last_second / baseline if baseline else 1.0,
        _rate_z(trades_last_second, baseline),
        state.signed_size.total / abs_total if abs_total > 0 else 0.0,
        log_return,
        prices.mean, price_std,
        returns.mean, return_std,
        len(prices.values),
    )

    prices.push(price)
    if not first:
        returns.push(log_return)
    state.quote_volume.push(price * qty)
    state.base_volume.push(qty)
    state.sizes.push(qty)
    state.log_sizes.push(math.log(qty))
    state.recent_prices.append((time_ms, price))
    rate_baseline.add(time_ms)
    state.last_price = price
    state.last_trade_id = trade.trade_id
    state.last_trade_time_ms = time_ms
    state.trades_seen += 1
    return features
