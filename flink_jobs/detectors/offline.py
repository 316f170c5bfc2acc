"""The job's detection semantics as one plain function over trades in order, without Flink.

Same features, methods, micro-batch scoring and per-symbol, per-method cooldown as the streaming
job (operators.ScoreTrades + ApplyCooldown). Used as the reference in tests, by the labelled
benchmark, and wherever an answer is wanted without a cluster.
"""
from __future__ import annotations

from typing import Iterable

from config import DetectionConfig
from flink_jobs.detectors.methods import Cooldown, candidates, explain, score_batch
from flink_jobs.detectors.zscore import ZScoreDetector
from flink_jobs.features.symbol_state import Repeated, SymbolState, observe_in_order
from flink_jobs.trades import Trade


def detect(trades: Iterable[Trade], config: DetectionConfig, model=None, batch_size: int = 4096):
    """(scored, anomalies): scored is [(trade, features, if_score)] for every new trade in input
    order; anomalies are the Anomaly tuples that pass cooldown, in input order."""
    if config.needs_model and model is None:
        raise ValueError("methods iforest and combined need a model")
    zscore, cooldown = ZScoreDetector(config), Cooldown(config.cooldown_seconds)
    states: dict[str, SymbolState] = {}
    observed = []
    for trade, features in observe_in_order(states, trades, config.window_size):
        if type(features) is not Repeated:
            observed.append((trade, features))
    last_by_symbol: dict[str, dict] = {}
    scored, anomalies = [], []
    for start in range(0, len(observed), batch_size):
        chunk = observed[start:start + batch_size]
        batch = score_batch(model, [f for _, f in chunk])
        for (trade, features), if_score, label in zip(chunk, batch.scores, batch.labels):
            scored.append((trade, features, if_score))
            for candidate in candidates(config, zscore, trade, features, if_score, label, batch):
                last = last_by_symbol.setdefault(trade.symbol, {})
                if cooldown.allow(last, candidate.method, trade.trade_time_ms):
                    anomalies.append(explain(candidate, zscore))
    return scored, anomalies
