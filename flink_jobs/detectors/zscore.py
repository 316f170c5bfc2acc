"""Z-score detector: a trade whose log return is far outside the symbol's recent returns.

The trigger is the z-score of the trade's log return against the last N returns: a one-trade
jump stands out there whatever the price level. The z-score of the price itself against the last
N prices is recorded with every anomaly for context but does not trigger on its own, because a
steady trend pushes it past any threshold without anything anomalous happening.
"""
from __future__ import annotations

import math

from config import DetectionConfig
from flink_jobs.detectors.base import Anomaly, severity_of
from flink_jobs.features.symbol_state import SymbolState, TradeFeatures
from flink_jobs.trades import Trade

METHOD = "zscore"


class ZScoreDetector:
    def __init__(self, config: DetectionConfig):
        self.config = config
        self.cooldown_ms = int(config.cooldown_seconds * 1000)
        self._thresholds: dict[str, float] = {}

    def threshold(self, symbol: str) -> float:
        if symbol not in self._thresholds:
            self._thresholds[symbol] = self.config.threshold_for(symbol)
        return self._thresholds[symbol]

    def in_cooldown(self, state: SymbolState, trade_time_ms: int) -> bool:
        last = state.last_anomaly_time_ms
        return last is not None and trade_time_ms - last < self.cooldown_ms

    def check(self, trade: Trade, features: TradeFeatures, state: SymbolState) -> Anomaly | None:
        """An Anomaly when the trade's return z-score reaches the symbol's threshold, outside cooldown.

        Records the anomaly time in `state` so the cooldown applies to the trades that follow.
        """
        if features.history < self.config.min_history:
            return None
        threshold = self.threshold(trade.symbol)
        score = features.z_return
        if abs(score) < threshold or self.in_cooldown(state, trade.trade_time_ms):
            return None
        state.last_anomaly_time_ms = trade.trade_time_ms
        move_pct = math.expm1(features.log_return) * 100
        reason = (f"{trade.symbol} moved {move_pct:+.3f}% in one trade: return z-score {score:+.1f} "
                  f"vs threshold {threshold:g} over the last {features.history} trades "
                  f"(price z-score {features.z_price:+.1f})")
        return Anomaly(trade.symbol, trade.trade_id, trade.trade_time_ms, METHOD, trade.price, score,
                       threshold, severity_of(score, threshold), reason, features.z_price,
                       features.z_return, features.log_return)
