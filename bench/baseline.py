"""The earlier single-process design, reproduced as the benchmark's baseline.

Per symbol: z-score of the raw price against the last 1,000 prices at 3.5 sigma; an Isolation
Forest on [z_score, price_change_pct, time_gap_sec], retrained on the last 1,000 trades every
1,000 trades (no model before the first 1,000); combined = both agree. The same 60 s per-symbol,
per-method cooldown as ours, so the comparison is about detection, not alert throttling.
"""
from __future__ import annotations

import numpy as np

from flink_jobs.detectors.methods import Cooldown
from flink_jobs.trades import Trade

WINDOW, THRESHOLD, RETRAIN_EVERY, MIN_HISTORY = 1000, 3.5, 1000, 50


def rolling_price_z(prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z of each price against the (up to) WINDOW prices before it, and how many there were."""
    shifted = prices - prices[0]  # keeps the sums of squares small
    c1 = np.concatenate([[0.0], np.cumsum(shifted)])
    c2 = np.concatenate([[0.0], np.cumsum(shifted ** 2)])
    idx = np.arange(len(prices))
    lo = np.maximum(0, idx - WINDOW)
    n = idx - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (c1[idx] - c1[lo]) / n
        var = np.maximum((c2[idx] - c2[lo]) / n - mean ** 2, 0.0)
        z = np.where((n >= 2) & (var > 0), (shifted - mean) / np.sqrt(var), 0.0)
    return z, n


def detect(trades: list[Trade], cooldown_seconds: float = 60.0, seed: int = 42):
    """[(trade, method)] alerts after cooldown, in input order."""
    from sklearn.ensemble import IsolationForest

    by_symbol: dict[str, list[int]] = {}
    for i, trade in enumerate(trades):
        by_symbol.setdefault(trade.symbol, []).append(i)
    z_of, history_of, if_flags = np.zeros(len(trades)), np.zeros(len(trades)), np.zeros(len(trades), bool)
    for indices in by_symbol.values():
        mine = [trades[i] for i in indices]
        prices = np.array([t.price for t in mine])
        times = np.array([t.trade_time_ms for t in mine], dtype=float)
        z, n = rolling_price_z(prices)
        change = np.concatenate([[0.0], (prices[1:] / prices[:-1] - 1) * 100])
        gap = np.concatenate([[0.0], np.diff(times) / 1000])
        features = np.column_stack([z, change, gap])
        z_of[indices], history_of[indices] = z, n
        # The model fitted on trades [k-1000, k) scores trades [k, k+1000).
        for start in range(RETRAIN_EVERY, len(indices), RETRAIN_EVERY):
            model = IsolationForest(n_estimators=100, contamination=0.01, random_state=seed)
            model.fit(features[start - RETRAIN_EVERY:start])
            labels = model.predict(features[start:start + RETRAIN_EVERY])
            if_flags[np.asarray(indices[start:start + RETRAIN_EVERY])[labels == -1]] = True

    cooldown, last_by_symbol, alerts = Cooldown(cooldown_seconds), {}, []
    for i, trade in enumerate(trades):
        z_fires = history_of[i] >= MIN_HISTORY and abs(z_of[i]) >= THRESHOLD
        if_fires = bool(if_flags[i])
        for method, fires in (("zscore", z_fires), ("iforest", if_fires), ("combined", z_fires and if_fires)):
            if fires and cooldown.allow(last_by_symbol.setdefault(trade.symbol, {}), method, trade.trade_time_ms):
                alerts.append((trade, method))
    return alerts
