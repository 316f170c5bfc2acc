"""Z-score method: a trade far outside the symbol's recent behaviour on any of three z-scores.

- the log return against the last N returns (a jump, whatever the price level);
- the log size against the median/MAD of the last 50 sizes (a volume spike);
- the trailing-second trade count against its baseline (a burst of trades).
The method fires when the largest of the three reaches the symbol's threshold. The z-score of the
price itself is recorded for context but does not trigger, because a steady trend pushes it
past any threshold without anything anomalous happening.
"""
from __future__ import annotations

import math

from config import DetectionConfig
from flink_jobs.features.symbol_state import TradeFeatures

METHOD = "zscore"
# The three signals: (feature, words, two-sided). Sizes and rates fire only upwards.
SIGNALS = (("z_return", "return z-score", True), ("volume_z", "volume z-score", False),
           ("rate_z", "rate z-score", False))


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
        """The strongest of the three z-scores: a return either way; only unusually *large* sizes and
        rates (a tiny trade or a quiet second is no anomaly). Keeps the return's sign."""
        # max((z_return, max(volume_z, 0), max(rate_z, 0)), key=abs), spelled out: it runs for
        # every trade, and the conditionals keep max()'s choices (the first on ties, NaN included).
        strongest = features.z_return
        volume_z, rate_z = features.volume_z, features.rate_z
        if volume_z < 0.0:
            volume_z = 0.0
        if rate_z < 0.0:
            rate_z = 0.0
        if abs(volume_z) > abs(strongest):
            strongest = volume_z
        if abs(rate_z) > abs(strongest):
            strongest = rate_z
        return strongest

    def fires(self, symbol: str, features: TradeFeatures) -> bool:
        """True when the trade has enough history and its z-score reaches the symbol's threshold."""
        return (features.history >= self.config.min_history
                and abs(self.score(features)) >= self.threshold(symbol))

    def reason(self, symbol: str, features: TradeFeatures) -> str:
        threshold = self.threshold(symbol)
        parts = []
        if abs(features.z_return) >= threshold:
            move_pct = math.expm1(features.log_return) * 100
            parts.append(f"moved {move_pct:+.3f}% in one trade: return z-score {features.z_return:+.1f}")
        if features.volume_z >= threshold:
            parts.append(f"size {features.volume_spike_ratio:.1f}x the median: volume z-score {features.volume_z:+.1f}")
        if features.rate_z >= threshold:
            parts.append(f"trade rate {features.trade_rate_burst:.1f}x its baseline: rate z-score {features.rate_z:+.1f}")
        return (f"{symbol} {'; '.join(parts) or 'below threshold'} vs threshold {threshold:g} "
                f"over the last {features.history} trades (price z-score {features.z_price:+.1f})")
