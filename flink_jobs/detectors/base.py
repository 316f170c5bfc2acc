"""What every detector emits."""
from __future__ import annotations

from typing import NamedTuple


class Anomaly(NamedTuple):
    symbol: str
    trade_id: int
    trade_time_ms: int
    method: str
    price: float
    score: float          # the detector's own score (z-score for "zscore")
    threshold: float
    severity: str         # low | medium | high
    reason: str           # one human-readable sentence
    z_price: float
    z_return: float
    log_return: float


def severity_of(score: float, threshold: float) -> str:
    """How far past its threshold a score went: 3x or more is high, 1.5x or more medium."""
    ratio = abs(score) / threshold
    if ratio >= 3:
        return "high"
    if ratio >= 1.5:
        return "medium"
    return "low"
