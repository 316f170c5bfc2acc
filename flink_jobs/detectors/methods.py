"""The three methods side by side: scoring a micro-batch, which methods fire for each scored trade,
and the Anomaly each raises. The Flink job (operators.ScoreTrades, then ApplyCooldown) and the
offline reference (offline.py) both go through `score_batch`, `candidates`, `Cooldown` and
`explain`, so they cannot decide differently.

- zscore: the largest of the return, size and rate z-scores reaches the symbol's threshold (zscore.py).
- iforest: the Isolation Forest labels the trade an outlier (score below 0).
- combined: both agree: the z-score fires and the forest confirms: its score is below the model's
  combined threshold (the 1% most unusual of its training data), or the signal that fired lies
  beyond anything the forest was trained on, where it cannot judge (iforest.beyond_training).
  The filtered method.
Cooldown is separate (Cooldown below) because it needs the symbol's state after scoring.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from config import DetectionConfig
from flink_jobs.detectors.base import (SEVERITY_ORDER, Anomaly, describe_features, iforest_severity,
                                       zscore_severity)
from flink_jobs.detectors.zscore import ZScoreDetector
from flink_jobs.features.symbol_state import FEATURE_COUNT, TradeFeatures
from flink_jobs.trades import Trade


class ScoredBatch(NamedTuple):
    scores: list            # Isolation Forest score per trade (NaN without a model)
    labels: list            # -1 outlier, 1 inlier
    version: str            # model version, "" without a model
    combined_threshold: float
    beyond_training: object  # features -> words or None (OnnxIsolationForest.beyond_training)


def _never(_features) -> None:
    return None


def score_batch(model, features: list[TradeFeatures]) -> ScoredBatch:
    """One onnxruntime call for the whole batch. Without a model (DETECTION_METHODS=zscore) the
    scores are NaN and neither fire the forest nor confirm a z-score."""
    matrix = np.array([f.vector() for f in features], dtype=np.float32).reshape(len(features), FEATURE_COUNT)
    scored = score_matrix(model, matrix)
    return scored._replace(scores=scored.scores.tolist(), labels=scored.labels.tolist())


def score_matrix(model, rows: np.ndarray) -> ScoredBatch:
    """score_batch for the model's input columns as a float32 matrix; scores and labels as arrays."""
    if model is None:
        return ScoredBatch(np.full(len(rows), math.nan), np.ones(len(rows), dtype=np.int64), "", -math.inf, _never)
    scores, labels = model.score(rows)
    return ScoredBatch(scores, labels, model.version, model.combined_threshold, model.beyond_training)


def candidate_rows(config: DetectionConfig, features: np.ndarray, thresholds: np.ndarray,
                   labels: np.ndarray) -> np.ndarray:
    """Rows of a scored batch (TradeFeatures' fields per row, each row's z-score threshold and
    forest label) for which a method may fire: `candidates` decides for these alone. A superset of
    the rows it returns something for: enough history (every method needs it), and a label of -1
    or one of the three z-scores at the threshold (ZScoreDetector.fires: the strongest of them is
    one of them; NaN compares false in both)."""
    if not len(features):
        return np.empty(0, dtype=np.int64)
    column = _FEATURE_INDEX
    z_return, volume_z, rate_z = (features[:, column[name]] for name in ("z_return", "volume_z", "rate_z"))
    with np.errstate(invalid="ignore"):
        zscore_may_fire = ((np.abs(z_return) >= thresholds) | (np.maximum(volume_z, 0.0) >= thresholds)
                           | (np.maximum(rate_z, 0.0) >= thresholds))
    return np.flatnonzero((features[:, column["history"]] >= config.min_history) & (zscore_may_fire | (labels == -1)))


_FEATURE_INDEX = {name: i for i, name in enumerate(TradeFeatures._fields)}


class Candidate(NamedTuple):
    """A method that fired for a trade, before cooldown: what `explain` needs to make its Anomaly.
    Nearly every candidate of a burst is dropped by the cooldown, so the reason, most of an
    anomaly's cost, is written only for those let through (docs/performance.md, "Ninth round")."""
    trade: Trade
    features: TradeFeatures
    method: str
    if_score: float
    model_version: str
    novelty: str | None  # combined only: the signal beyond the training data that confirmed it


def candidates(config: DetectionConfig, zscore: ZScoreDetector, trade: Trade, features: TradeFeatures,
               if_score: float, label: int, batch: ScoredBatch) -> list[Candidate]:
    """The methods that fire for one scored trade, before cooldown."""
    zscore_fires = zscore.fires(trade.symbol, features)
    if not zscore_fires and label != -1:
        return []  # no method can fire: combined needs the z-score, iforest an outlier label (most trades)
    scored_unusual = if_score < batch.combined_threshold
    # Novelty only matters (and is only described) where the score alone would not confirm.
    novelty = (batch.beyond_training(features)
               if zscore_fires and not scored_unusual and "combined" in config.methods else None)
    fired = fired_methods(config.methods, zscore_fires,
                          label == -1 and features.history >= config.min_history,
                          scored_unusual or novelty is not None)
    return [Candidate(trade, features, method, if_score, batch.version, novelty) for method in fired]


def fired_methods(methods: tuple, zscore_fires: bool, iforest_fires: bool, iforest_confirms: bool) -> list[str]:
    fired = {"zscore": zscore_fires, "iforest": iforest_fires, "combined": zscore_fires and iforest_confirms}
    return [m for m in methods if fired[m]]


def explain(candidate: Candidate, zscore: ZScoreDetector) -> Anomaly:
    """The Anomaly a candidate raises: its scores, severity and reason."""
    method, trade, features, if_score, model_version = (candidate.method, candidate.trade, candidate.features,
                                                        candidate.if_score, candidate.model_version)
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
    confirmation = (iforest_reason if candidate.novelty is None
                    else f"{candidate.novelty} (model {model_version}, score {if_score:+.3f})")
    return Anomaly(trade, features, "combined", z, threshold, z, if_score, model_version, severity,
                   f"{zscore.reason(trade.symbol, features)}; and {confirmation}")


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
