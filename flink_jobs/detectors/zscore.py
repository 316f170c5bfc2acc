"""Z-score method: a trade whose log return is far outside the symbol's recent returns.

The trigger is the z-score of the trade's log return against the last N returns: a one-trade
jump stands out there whatever the price level. The z-score of the price itself is recorded for
context but does not trigger on its own, because a steady trend pushes it past any threshold
without anything anomalous happening.
"""
from __future__ import annotations

import math

from config import DetectionConfig
from flink_jobs.features.symbol_state import TradeFeatures

METHOD = "zscore"


class ZScoreDetector:
    def __init__(self, config: DetectionConfig):
        self.config = config
        self._thresholds: dict[str, float] = {}

    def threshold(self, symbol: str) -> float:
        if symbol not in self._thresholds:
            self._thresholds[symbol] = self.config.threshold_for(symbol)
        return self._thresholds[symbol]

    @staticmethod
    def score(features: TradeFeatures) -> float:
        return features.z_return

    def fires(self, symbol: str, features: TradeFeatures) -> bool:
        """True when the trade has enough history and its z-score reaches the symbol's threshold."""
        return features.history >= self.config.min_history and abs(features.z_return) >= self.threshold(symbol)

    def reason(self, symbol: str, features: TradeFeatures) -> str:
        move_pct = math.expm1(features.log_return) * 100
        return (f"{symbol} moved {move_pct:+.3f}% in one trade: return z-score {features.z_return:+.1f} "
                f"vs threshold {self.threshold(symbol):g} over the last {features.history} trades "
                f"(price z-score {features.z_price:+.1f})")
