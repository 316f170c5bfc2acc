"""Each feature against a plain numpy computation of its definition, on real trades."""
import math

import numpy as np
import pytest

from flink_jobs.features.symbol_state import (FEATURE_NAMES, IMBALANCE_WINDOW, VELOCITY_WINDOW, VOLUME_WINDOW,
                                              VWAP_WINDOW, SymbolState, observe)
from flink_jobs.trades import Trade

from tests.conftest import read_sample_trades

WINDOW = 300


@pytest.fixture(scope="module")
def real():
    """5,000 real XRPETH trades and their features, one row per trade."""
    rows = read_sample_trades("XRPETH-trades-2019-10-11.csv")
    trades = [Trade("XRPETH", int(r[0]), float(r[1]), float(r[2]), int(r[4]), int(r[4]), r[5] == "true")
              for r in rows]
    state = SymbolState(WINDOW)
    features = [observe(state, t) for t in trades]
    prices = np.array([t.price for t in trades])
    return {"trades": trades, "features": features, "price": prices,
            "qty": np.array([t.qty for t in trades]), "time": np.array([t.trade_time_ms for t in trades]),
            "maker": np.array([t.is_buyer_maker for t in trades]),
            "ret": np.concatenate([[0.0], np.diff(np.log(prices))])}


def column(real, name):
    return np.array([getattr(f, name) for f in real["features"]])


SAMPLE = range(1, 5000, 37)


def test_feature_vector_follows_feature_names(real):
    f = real["features"][100]
    assert f.vector() == [getattr(f, name) for name in FEATURE_NAMES]


def test_price_and_return_zscores_use_the_window_before_the_trade(real):
    p, r = real["price"], real["ret"]
    # Deviations are floored at 0.1 bp (MIN_RETURN_STD): of the mean price, and of returns.
    for i in SAMPLE:
        window = p[max(0, i - WINDOW):i]
        expected = (p[i] - window.mean()) / max(window.std(), 1e-5 * window.mean())
        assert column(real, "z_price")[i] == pytest.approx(expected, rel=1e-6, abs=1e-9)
        returns = r[max(1, i - WINDOW):i]
        if len(returns) > 1:
            expected = (r[i] - returns.mean()) / max(returns.std(), 1e-5)
            assert real["features"][i].z_return == pytest.approx(expected, rel=1e-6)


def test_price_change_and_time_gap(real):
    p, t = real["price"], real["time"]
    np.testing.assert_allclose(column(real, "price_change_pct")[1:], (p[1:] / p[:-1] - 1) * 100, rtol=1e-9)
    np.testing.assert_allclose(column(real, "time_gap_sec")[1:], np.diff(t) / 1000.0)


def test_vwap_deviation_against_the_previous_100_trades(real):
    p, q = real["price"], real["qty"]
    for i in SAMPLE:
        lo = max(0, i - VWAP_WINDOW)
        vwap = (p[lo:i] * q[lo:i]).sum() / q[lo:i].sum()
        assert real["features"][i].vwap_deviation_pct == pytest.approx((p[i] / vwap - 1) * 100, rel=1e-6, abs=1e-9)


def test_volume_spike_is_size_over_the_median_of_the_previous_50(real):
    q = real["qty"]
    for i in SAMPLE:
        assert real["features"][i].volume_spike_ratio == pytest.approx(q[i] / np.median(q[max(0, i - VOLUME_WINDOW):i]))


def test_velocity_is_percent_change_over_20_trades_per_second(real):
    p, t = real["price"], real["time"]
    for i in SAMPLE:
        j = max(0, i - VELOCITY_WINDOW)
        span = max((t[i] - t[j]) / 1000.0, 0.1)
        assert real["features"][i].price_velocity_pct_s == pytest.approx((p[i] / p[j] - 1) * 100 / span, rel=1e-9, abs=1e-12)


def test_trade_rate_burst_is_trades_in_the_last_second_over_its_ewma(real):
    t = real["time"]
    counts = np.array([np.sum((t[:i + 1] > t[i] - 1000)) for i in range(len(t))])
    baseline = None
    for i, count in enumerate(counts):
        expected = count / baseline if baseline else 1.0
        if i in SAMPLE:
            assert real["features"][i].trade_rate_burst == pytest.approx(expected, rel=1e-9)
        baseline = count if baseline is None else baseline + 0.01 * (count - baseline)


def test_buy_sell_imbalance_over_the_last_50_trades_including_this_one(real):
    q, maker = real["qty"], real["maker"]
    signed = np.where(maker, -q, q)
    for i in SAMPLE:
        lo = max(0, i - IMBALANCE_WINDOW + 1)
        assert real["features"][i].buy_sell_imbalance == pytest.approx(signed[lo:i + 1].sum() / q[lo:i + 1].sum(),
                                                                       abs=1e-9)


def test_robust_return_zscore_uses_median_and_mad_refreshed_every_50_trades(real):
    r = real["ret"]
    for i in range(153, 5000, 50):  # refreshed at these trades: the first with two returns (3), then every 50
        window = r[max(1, i - WINDOW):i]
        median = np.median(window)
        mad = np.median(np.abs(window - median))
        if mad == 0:
            mad = np.mean(np.abs(window - median)) * 1.2533 / 1.4826
        assert real["features"][i].robust_z_return == pytest.approx((r[i] - median) / (1.4826 * mad), rel=1e-6)


def test_a_spike_stands_out_more_in_the_robust_score_after_an_earlier_spike():
    rng = np.random.default_rng(5)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 1e-4, 400)))
    prices[100] *= 1.01   # an earlier spike inflates the standard deviation of returns...
    prices[300] *= 1.002  # ...so this smaller one looks weaker by z than by robust z
    state = SymbolState(1000)
    features = [observe(state, Trade("X", i, float(p), 1.0, 1_600_000_000_000 + i * 100, 0, False))
                for i, p in enumerate(prices)]
    assert abs(features[300].robust_z_return) > 2 * abs(features[300].z_return)
    assert math.isfinite(features[300].robust_z_return)
