"""Each feature against a plain numpy computation of its definition, on real trades."""
import hashlib
import math
import random
import struct
from array import array

import numpy as np
import pytest

from flink_jobs.features.symbol_state import (FEATURE_NAMES, FEATURE_SET_VERSION, IMBALANCE_WINDOW, LOG_SIZE_WINDOW,
                                              RATE_BASELINE_TAU_S, RATE_OVERDISPERSION, RATE_Z_PRIOR,
                                              VELOCITY_WINDOW, VOLUME_WINDOW, VWAP_WINDOW, SymbolState, kernel, observe)
from flink_jobs.features.windows import DecayingRate
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


def rate_before(t: np.ndarray, i: int) -> float | None:
    """Trades per second before trade i: every earlier trade weighted exp(-age / tau), divided by
    the weight the history since the first trade can carry (the definition in plain numpy)."""
    tau_ms = RATE_BASELINE_TAU_S * 1000
    if i == 0 or t[i] <= t[0]:
        return None
    weights = np.exp(-(t[i] - t[:i]) / tau_ms).sum()
    return weights / (tau_ms * (1 - np.exp(-(t[i] - t[0]) / tau_ms))) * 1000


def rate_at_previous_trade(t: np.ndarray, i: int) -> float | None:
    """Trades per second as they stood at trade i-1 (it included), before the gap to trade i."""
    tau_ms = RATE_BASELINE_TAU_S * 1000
    if i < 2 or t[i - 1] <= t[0]:
        return None
    weights = np.exp(-(t[i - 1] - t[:i]) / tau_ms).sum()
    return weights / (tau_ms * (1 - np.exp(-(t[i - 1] - t[0]) / tau_ms))) * 1000


def duration_scale(t: np.ndarray, i: int) -> float:
    rate = rate_at_previous_trade(t, i)
    gap_s = (t[i] - t[i - 1]) / 1000 if i else 0.0
    return 1.0 if not rate else math.sqrt(max(1.0, gap_s * rate))


def column(real, name):
    return np.array([getattr(f, name) for f in real["features"]])


SAMPLE = range(1, 5000, 37)


def test_feature_vector_follows_feature_names(real):
    f = real["features"][100]
    assert f.vector() == tuple(getattr(f, name) for name in FEATURE_NAMES)


def test_price_and_return_zscores_use_the_window_before_the_trade_and_the_time_it_took(real):
    p, r = real["price"], real["ret"]
    # Deviations are floored at 0.1 bp (MIN_RETURN_STD): of the mean price, and of returns.
    for i in SAMPLE:
        window = p[max(0, i - WINDOW):i]
        expected = (p[i] - window.mean()) / max(window.std(), 1e-5 * window.mean())
        assert column(real, "z_price")[i] == pytest.approx(expected, rel=1e-6, abs=1e-9)
        returns = r[max(1, i - WINDOW):i]
        if len(returns) > 1:
            expected = (r[i] - returns.mean()) / max(returns.std(), 1e-5) / duration_scale(real["time"], i)
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


def test_trade_rate_burst_and_rate_z_against_the_time_weighted_baseline(real):
    t = real["time"]
    for i in SAMPLE:
        count = int(np.sum(t[:i + 1] > t[i] - 1000))
        baseline = rate_before(t, i)
        f = real["features"][i]
        assert f.trade_rate_burst == pytest.approx(count / baseline if baseline else 1.0, rel=1e-6)
        expected_z = (count - baseline) / math.sqrt(RATE_OVERDISPERSION * baseline + RATE_Z_PRIOR) if baseline else 0.0
        assert f.rate_z == pytest.approx(expected_z, rel=1e-6, abs=1e-9)


def test_volume_z_is_log_size_against_the_median_and_upper_tail_of_the_previous_100(real):
    q = real["qty"]
    for i in SAMPLE:
        if i < 5:
            continue
        logs = np.log(q[max(0, i - LOG_SIZE_WINDOW):i])
        median = np.median(logs)
        spread = np.quantile(logs, 0.95) - median
        expected = (np.log(q[i]) - median) / (spread / 1.6449) if spread > 1e-12 else 0.0
        assert real["features"][i].volume_z == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_decaying_rate_measures_a_steady_rate_from_the_start():
    rate = DecayingRate(60.0)
    for i in range(200):  # 4 trades per second, measured long before tau has passed
        if i >= 2:
            assert rate.per_second(i * 250) == pytest.approx(4.0, rel=0.01)
        rate.add(i * 250)
    assert DecayingRate(60.0).per_second(0) is None
    # A minute of silence lowers the rate now, not the pace the market had when it went quiet.
    assert rate.per_second(200 * 250 + 60_000) < 2.0
    assert rate.per_second_at_last_event() == pytest.approx(4.0, rel=0.01)


def test_a_burst_of_trades_stands_out_against_the_minute_before_it():
    """80 trades in one second on a market trading about 1.5 per second: the per-trade baseline of
    the first design followed the burst within it; the time-weighted one does not."""
    rng = np.random.default_rng(3)
    times = list(np.cumsum(rng.exponential(667, 600)).astype(int))
    burst_start = times[-1] + 500
    times += [burst_start + k * 12 for k in range(80)]
    state = SymbolState(1000)
    features = [observe(state, Trade("X", i, 100.0, 1.0, int(ms), int(ms), False)) for i, ms in enumerate(times)]
    assert max(f.rate_z for f in features[50:600]) < 3.5
    assert features[-1].rate_z > 10 and features[-1].trade_rate_burst > 20


def test_a_move_after_a_long_silence_scores_lower_than_the_same_move_between_quick_trades():
    def last_z(final_gap_ms):
        rng = np.random.default_rng(4)  # the same market both times
        state = SymbolState(1000)
        price, ms, features = 100.0, 0, None
        for i in range(500):
            price *= math.exp(rng.normal(0, 1e-4))
            ms += 500
            observe(state, Trade("X", i, price, 1.0, ms, ms, False))
        features = observe(state, Trade("X", 500, price * 1.001, 1.0, ms + final_gap_ms, ms + final_gap_ms, False))
        return features.z_return
    # The exact scaling is checked against numpy on real trades above; here: what it is for.
    quick, after_silence = last_z(500), last_z(60_000)
    assert quick > 5 and after_silence < quick / 5


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
        expected = (r[i] - median) / (1.4826 * mad) / duration_scale(real["time"], i)
        assert real["features"][i].robust_z_return == pytest.approx(expected, rel=1e-6)


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


@pytest.mark.parametrize("zero_share", [0.0, 0.6])   # 0.6: more than half the returns 0, so the MAD is 0
@pytest.mark.parametrize("n", [999, 1000])
def test_the_compiled_median_and_mad_equal_numpy_and_a_plain_sum_bit_for_bit(zero_share, n):
    rng = random.Random(11)
    values = np.array([0.0 if rng.random() < zero_share else rng.gauss(0, 1e-4) for _ in range(n)])
    median, mad = kernel._median_and_mad(np.concatenate(([7.0] * 3, values)), 3, n, np.empty(n), 1.4826)
    assert median == np.median(values)
    expected_mad = float(np.median(np.abs(values - median)))
    if expected_mad == 0.0:  # its stand-in, summed in storage order as Python's sum() does
        expected_mad = sum(abs(v - median) for v in values.tolist()) / n * 1.2533 / 1.4826
    assert mad == expected_mad and mad > 0.0


# sha256 of every feature of the 5,000 real trades (struct "<17dq" per trade), recorded with the
# feature code of ac9c6cc, before `observe` was inlined for speed: a faster observe must compute the
# same operations in the same order, so a model trained before it scores the same. A deliberate
# change of a definition bumps FEATURE_SET_VERSION and records new digests. (The digests assume
# glibc's libm, as on the machines the tests run on: another libm may round log/exp differently.)
RECORDED_FEATURE_DIGESTS = {
    300: "445bbd14ff26b818d63441eefd32be921508dcd45acb899e08c4d1b7257e3d38",
    1000: "6f9902c97f5b972769a13e6c2b1c0bd17124c9bb034b8850d4284b30c050fe39",
}


@pytest.mark.parametrize("window", sorted(RECORDED_FEATURE_DIGESTS))
def test_features_equal_the_recorded_ones_bit_for_bit(real, window):
    state, digest = SymbolState(window), hashlib.sha256()
    for trade in real["trades"]:
        digest.update(struct.pack("<17dq", *observe(state, trade)))
    assert FEATURE_SET_VERSION == 2
    assert digest.hexdigest() == RECORDED_FEATURE_DIGESTS[window]
