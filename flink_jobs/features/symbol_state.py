"""Everything the job remembers about one symbol, and the features of a trade against it.

One SymbolState per symbol lives in Flink keyed state; `observe` is the only place it changes.
Features are always computed against the window *before* the trade joins it, so a spike cannot
dampen its own z-score.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from flink_jobs.features.rolling import RollingStats
from flink_jobs.trades import Trade


class TradeFeatures(NamedTuple):
    log_return: float      # ln(price / previous price); 0 for a symbol's first trade
    price_mean: float      # rolling mean of price over the window before this trade
    price_std: float
    z_price: float
    return_mean: float     # rolling mean of log returns over the window before this trade
    return_std: float
    z_return: float
    history: int           # trades in the price window before this one


class SymbolState:
    __slots__ = ("prices", "returns", "last_price", "last_trade_id", "last_trade_time_ms",
                 "last_anomaly_time_ms", "trades_seen")

    def __init__(self, window_size: int):
        self.prices = RollingStats(window_size)
        self.returns = RollingStats(window_size)
        self.last_price: float | None = None
        self.last_trade_id = -1
        self.last_trade_time_ms = 0
        self.last_anomaly_time_ms: int | None = None
        self.trades_seen = 0

    def is_replay_of_seen_trade(self, trade: Trade) -> bool:
        """Binance trade ids grow by one per symbol, so an id at or below the last is a repeat."""
        return trade.trade_id <= self.last_trade_id

    def __getstate__(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state):
        for name, value in zip(self.__slots__, state):
            setattr(self, name, value)


def observe(state: SymbolState, trade: Trade) -> TradeFeatures:
    """Features of `trade` against the current window, then adds the trade to the window."""
    price = trade.price
    log_return = math.log(price / state.last_price) if state.last_price else 0.0
    features = TradeFeatures(
        log_return=log_return,
        price_mean=state.prices.mean, price_std=state.prices.std, z_price=state.prices.zscore(price),
        return_mean=state.returns.mean, return_std=state.returns.std,
        z_return=state.returns.zscore(log_return),
        history=len(state.prices),
    )
    state.prices.push(price)
    if state.last_price is not None:
        state.returns.push(log_return)
    state.last_price = price
    state.last_trade_id = trade.trade_id
    state.last_trade_time_ms = trade.trade_time_ms
    state.trades_seen += 1
    return features
