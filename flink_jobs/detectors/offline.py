"""The job's detection semantics as one plain function over trades in order, without Flink.

Same features, methods, micro-batch scoring and per-symbol, per-method cooldown as the streaming
job (operators.ScoreTrades + ApplyCooldown). Used as the reference in tests, by the labelled
benchmark, and wherever an answer is wanted without a cluster.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from config import DetectionConfig
from flink_jobs.detectors.methods import Cooldown, fired_methods, make_anomaly
from flink_jobs.detectors.zscore import ZScoreDetector
from flink_jobs.features.symbol_state import SymbolState, observe
from flink_jobs.trades import Trade


def detect(trades: Iterable[Trade], config: DetectionConfig, model=None, batch_size: int = 4096):
    """(scored, anomalies): scored is [(trade, features, if_score)] for every new trade in input
    order; anomalies are the Anomaly tuples that pass cooldown, in input order."""
    if config.needs_model and model is None:
        raise ValueError("methods iforest and combined need a model")
    zscore, cooldown = ZScoreDetector(config), Cooldown(config.cooldown_seconds)
    states: dict[str, SymbolState] = {}
    observed = []
    for trade in trades:
        state = states.setdefault(trade.symbol, SymbolState(config.window_size))
        if not state.is_replay_of_seen_trade(trade):
            observed.append((trade, observe(state, trade)))
    scores = np.full(len(observed), np.nan)
    labels = np.ones(len(observed))
    if model is not None:
        for start in range(0, len(observed), batch_size):
            chunk = observed[start:start + batch_size]
            s, lab = model.score(np.array([f.vector() for _, f in chunk], dtype=np.float32))
            scores[start:start + len(chunk)], labels[start:start + len(chunk)] = s, lab
    version = model.version if model is not None else ""
    combined_threshold = model.combined_threshold if model is not None else float("-inf")
    last_by_symbol: dict[str, dict] = {}
    scored, anomalies = [], []
    for (trade, features), if_score, label in zip(observed, scores.tolist(), labels.tolist()):
        scored.append((trade, features, if_score))
        fired = fired_methods(config.methods, zscore.fires(trade.symbol, features),
                              label == -1 and features.history >= config.min_history,
                              if_score < combined_threshold)
        for method in fired:
            last = last_by_symbol.setdefault(trade.symbol, {})
            if cooldown.allow(last, method, trade.trade_time_ms):
                anomalies.append(make_anomaly(method, trade, features, zscore, if_score, version))
    return scored, anomalies
