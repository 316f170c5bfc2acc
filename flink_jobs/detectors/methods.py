"""The three methods side by side: which fire for a scored trade, and the Anomaly each raises.

- zscore: the return z-score reaches the symbol's threshold (zscore.py).
- iforest: the Isolation Forest labels the trade an outlier (score below 0).
- combined: both agree: the z-score fires and the forest confirms (score below the model's
  combined threshold, the 1% most unusual of its training data); the filtered method.
Cooldown is separate (Cooldown below) because it needs the symbol's state after scoring.
"""
from __future__ import annotations

from flink_jobs.detectors.base import (SEVERITY_ORDER, Anomaly, describe_features, iforest_severity,
                                       zscore_severity)
from flink_jobs.detectors.zscore import ZScoreDetector
from flink_jobs.features.symbol_state import TradeFeatures
from flink_jobs.trades import Trade


def fired_methods(methods: tuple, zscore_fires: bool, iforest_fires: bool, iforest_confirms: bool) -> list[str]:
    fired = {"zscore": zscore_fires, "iforest": iforest_fires, "combined": zscore_fires and iforest_confirms}
    return [m for m in methods if fired[m]]


def make_anomaly(method: str, trade: Trade, features: TradeFeatures, zscore: ZScoreDetector,
                 if_score: float, model_version: str) -> Anomaly:
    threshold = zscore.threshold(trade.symbol)
    z = zscore.score(features)
    if method == "zscore":
        return Anomaly(trade, features, method, z, threshold, z, if_score, model_version,
                       zscore_severity(z, threshold), zscore.reason(trade.symbol, features))
    iforest_reason = (f"{trade.symbol}: Isolation Forest score {if_score:+.3f} (model {model_version}); "
                      f"{describe_features(features)}")
    if method == "iforest":
        return Anomaly(trade, features, method, if_score, 0.0, z, if_score, model_version,
                       iforest_severity(if_score), iforest_reason)
    severity = max(zscore_severity(z, threshold), iforest_severity(if_score), key=SEVERITY_ORDER.get)
    return Anomaly(trade, features, "combined", z, threshold, z, if_score, model_version, severity,
                   f"{zscore.reason(trade.symbol, features)}; and {iforest_reason}")


class Cooldown:
    """Per symbol and method: after an anomaly, the same method stays quiet for `seconds` of event time."""

    def __init__(self, seconds: float):
        self.cooldown_ms = int(seconds * 1000)

    def allow(self, last_by_method: dict, method: str, time_ms: int) -> bool:
        """True (and remembers the time) when `method` may raise an anomaly at `time_ms`."""
        last = last_by_method.get(method)
        if last is not None and time_ms - last < self.cooldown_ms:
            return False
        last_by_method[method] = time_ms
        return True
