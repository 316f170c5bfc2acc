"""What every detector emits, and the rules shared by all methods."""
from __future__ import annotations

from typing import NamedTuple

from flink_jobs.features.symbol_state import TradeFeatures
from flink_jobs.trades import Trade

# Isolation Forest scores (scikit-learn's decision_function) below 0 are outliers; these mark
# how far below counts as a medium or a high severity.
IFOREST_MEDIUM, IFOREST_HIGH = -0.05, -0.12


class Anomaly(NamedTuple):
    trade: Trade
    features: TradeFeatures
    method: str           # zscore | iforest | combined
    score: float          # the method's own score: z-score, IF score, or the z-score for combined
    threshold: float
    zscore: float
    if_score: float       # NaN when no model scored the trade
    model_version: str    # "" when no model scored the trade
    severity: str         # low | medium | high
    reason: str           # one human-readable sentence


def zscore_severity(score: float, threshold: float) -> str:
    """How far past its threshold a z-score went: 3x or more is high, 1.5x or more medium."""
    ratio = abs(score) / threshold
    return "high" if ratio >= 3 else "medium" if ratio >= 1.5 else "low"


def iforest_severity(if_score: float) -> str:
    return "high" if if_score <= IFOREST_HIGH else "medium" if if_score <= IFOREST_MEDIUM else "low"


SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2}


def describe_features(f: TradeFeatures) -> str:
    """The features that stand out, in words: what a surveillance analyst checks first."""
    notes = []
    if abs(f.price_change_pct) >= 0.05:
        notes.append(f"price {f.price_change_pct:+.3f}% in one trade")
    if abs(f.vwap_deviation_pct) >= 0.1:
        notes.append(f"{f.vwap_deviation_pct:+.2f}% from VWAP(100)")
    if f.volume_spike_ratio >= 5:
        notes.append(f"size {f.volume_spike_ratio:.1f}x the median")
    if f.trade_rate_burst >= 3:
        notes.append(f"trade rate {f.trade_rate_burst:.1f}x its baseline")
    if abs(f.price_velocity_pct_s) >= 0.1:
        notes.append(f"velocity {f.price_velocity_pct_s:+.2f}%/s over 20 trades")
    if abs(f.buy_sell_imbalance) >= 0.8:
        notes.append(f"{'buy' if f.buy_sell_imbalance > 0 else 'sell'} imbalance {abs(f.buy_sell_imbalance):.0%}")
    return ", ".join(notes) or "no single feature stands out"
