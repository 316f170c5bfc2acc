"""The earlier single-process design, reproduced as the benchmark's baseline.

Per symbol: z-score of the raw price against the last 1,000 prices at 3.5 sigma; an Isolation
Forest on [z_score, price_change_pct, time_gap_sec], retrained on the last 1,000 trades every
1,000 trades (no model before the first 1,000); combined = both agree. The same 60 s per-symbol,
per-method cooldown as ours, so the comparison is about detection, not alert throttling.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np

from flink_jobs.detectors.methods import Cooldown
from flink_jobs.trades import Trade

WINDOW, THRESHOLD, RETRAIN_EVERY, MIN_HISTORY = 1000, 3.5, 1000, 50


def detect(trades: list[Trade], cooldown_seconds: float = 60.0, seed: int = 42):
    """[(trade, method)] alerts after cooldown, in input order."""
    from sklearn.ensemble import IsolationForest

    per_symbol: dict[str, dict] = {}
    rows = []  # (trade, z, features) in input order
    for trade in trades:
        s = per_symbol.setdefault(trade.symbol, {"prices": deque(maxlen=WINDOW), "last": None})
        prices = s["prices"]
        if len(prices) >= 2:
            mean = sum(prices) / len(prices)
            std = math.sqrt(sum((p - mean) ** 2 for p in prices) / len(prices))
            z = (trade.price - mean) / std if std > 0 else 0.0
        else:
            z = 0.0
        last = s["last"]
        change = (trade.price / last.price - 1) * 100 if last else 0.0
        gap = (trade.trade_time_ms - last.trade_time_ms) / 1000 if last else 0.0
        rows.append((trade, z, len(prices), [z, change, gap]))
        prices.append(trade.price)
        s["last"] = trade

    # Isolation Forest, per symbol: the model fitted on trades [k-1000, k) scores trades [k, k+1000).
    if_flags = {}
    by_symbol: dict[str, list[int]] = {}
    for i, (trade, *_rest) in enumerate(rows):
        by_symbol.setdefault(trade.symbol, []).append(i)
    for indices in by_symbol.values():
        features = np.array([rows[i][3] for i in indices])
        for start in range(RETRAIN_EVERY, len(indices), RETRAIN_EVERY):
            model = IsolationForest(n_estimators=100, contamination=0.01, random_state=seed)
            model.fit(features[start - RETRAIN_EVERY:start])
            labels = model.predict(features[start:start + RETRAIN_EVERY])
            for offset, label in enumerate(labels):
                if label == -1:
                    if_flags[indices[start + offset]] = True

    cooldown, last_by_symbol, alerts = Cooldown(cooldown_seconds), {}, []
    for i, (trade, z, history, _) in enumerate(rows):
        z_fires = history >= MIN_HISTORY and abs(z) >= THRESHOLD
        if_fires = if_flags.get(i, False)
        for method, fires in (("zscore", z_fires), ("iforest", if_fires), ("combined", z_fires and if_fires)):
            if fires and cooldown.allow(last_by_symbol.setdefault(trade.symbol, {}), method, trade.trade_time_ms):
                alerts.append((trade, method))
    return alerts
