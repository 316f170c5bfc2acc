import random
import re

import pytest

from config import load
from flink_jobs.detectors.offline import detect
from flink_jobs.features.symbol_state import SymbolState, observe
from flink_jobs.trades import Trade

from tests.conftest import read_sample_trades


def detection(**env):
    env.setdefault("detection_methods", "zscore")
    return load({k.upper(): str(v) for k, v in env.items()}).detection


def trades_from_prices(prices, symbol="ETHUSDT", start_ms=1675329600000, step_ms=100, first_id=1):
    return [Trade(symbol, first_id + i, p, 1.0, start_ms + i * step_ms, start_ms + i * step_ms, False)
            for i, p in enumerate(prices)]


def run(trades, cfg):
    return detect(trades, cfg)[1]


def noisy_prices(n, seed=1, level=100.0):
    rng = random.Random(seed)
    return [level * (1 + rng.gauss(0, 0.0001)) for _ in range(n)]


def test_a_planted_spike_in_real_trades_is_detected_with_method_score_and_reason():
    rows = read_sample_trades("ETHUSDT-trades-2023-02-02.csv")
    trades = [Trade("ETHUSDT", int(r[0]), float(r[1]), float(r[2]), int(r[4]), int(r[4]), r[5] == "true")
              for r in rows]
    spike = 500
    trades[spike] = trades[spike]._replace(price=trades[spike].price * 1.01)
    anomalies = run(trades, detection())
    hit = [a for a in anomalies if a.trade.trade_id == trades[spike].trade_id]
    assert len(hit) == 1
    assert hit[0].method == "zscore" and hit[0].score > 3.5 and hit[0].severity == "high"
    assert re.match(r"ETHUSDT moved \+0\.99\d% in one trade: return z-score \+\d+", hit[0].reason)


def test_no_anomaly_before_min_history():
    prices = noisy_prices(60)
    prices[30] *= 1.05
    assert run(trades_from_prices(prices), detection(min_history=50)) == []
    assert [a.trade.trade_id for a in run(trades_from_prices(prices), detection(min_history=20))] == [31]


def test_cooldown_suppresses_anomalies_for_the_same_symbol_within_the_window():
    prices = noisy_prices(400)
    for i in (100, 150, 300):  # trades 100 ms apart: 150 is 5 s after 100, 300 is 20 s after
        prices[i] *= 1.05
    found = lambda cooldown: [a.trade.trade_id - 1 for a in run(trades_from_prices(prices), detection(cooldown_seconds=cooldown))]
    assert found(0)[:1] == [100] and {150, 300} <= set(found(0))
    assert 150 not in found(10) and {100, 300} <= set(found(10))
    assert found(60) == [100]


def test_per_symbol_threshold_decides():
    prices = noisy_prices(300, seed=3)
    prices[200] *= 1.0006  # about 4.2 standard deviations of this noise
    trades = trades_from_prices(prices, symbol="BNBUSDT")
    flagged = lambda threshold: [a.trade.trade_id for a in run(
        trades, detection(zscore_thresholds=f"BNBUSDT={threshold}", cooldown_seconds=0))]
    assert 201 in flagged(3.0)
    assert 201 not in flagged(10)


def test_flat_prices_raise_nothing():
    assert run(trades_from_prices([100.0] * 200), detection()) == []


def test_repeated_trade_ids_are_recognised():
    state = SymbolState(10)
    first = trades_from_prices([100.0, 101.0])
    for t in first:
        observe(state, t)
    assert state.is_replay_of_seen_trade(first[1]) and state.is_replay_of_seen_trade(first[0])
    assert not state.is_replay_of_seen_trade(first[1]._replace(trade_id=3))


def test_features_use_the_window_before_the_trade():
    state = SymbolState(3)
    for t in trades_from_prices([10.0, 11.0, 12.0]):
        observe(state, t)
    f = observe(state, trades_from_prices([13.0], first_id=4)[0])
    assert f.price_mean == pytest.approx(11.0) and f.history == 3
    assert f.z_price == pytest.approx((13.0 - 11.0) / (2 / 3) ** 0.5)


def test_the_score_is_the_strongest_z_by_magnitude_keeping_the_first_on_ties_and_nan():
    """ZScoreDetector.score spells out max() for speed; it must choose what max() would."""
    from itertools import product
    from math import copysign, inf, isnan, nan

    from flink_jobs.detectors.zscore import ZScoreDetector
    from flink_jobs.features.symbol_state import TradeFeatures

    values = [0.0, -0.0, 1.0, -1.0, 3.5, -3.5, -2.0, nan, inf, -inf]
    for z_return, volume_z, rate_z in product(values, repeat=3):
        features = TradeFeatures(*[0.0] * 18)._replace(z_return=z_return, volume_z=volume_z, rate_z=rate_z)
        expected = max((z_return, max(volume_z, 0.0), max(rate_z, 0.0)), key=abs)
        got = ZScoreDetector.score(features)
        assert (isnan(got) and isnan(expected)) or (got == expected and copysign(1, got) == copysign(1, expected))
