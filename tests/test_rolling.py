import math
import random

import numpy as np
import pytest

from flink_jobs.features.rolling import RollingStats


def assert_matches_numpy(stats: RollingStats, window: list[float]):
    assert len(stats) == len(window)
    assert stats.mean == pytest.approx(np.mean(window), rel=1e-12, abs=1e-15)
    assert stats.std == pytest.approx(np.std(window), rel=1e-7, abs=1e-15)


@pytest.mark.parametrize("capacity", [2, 7, 100])
def test_matches_numpy_after_every_push_on_random_data(capacity):
    rng = random.Random(42)
    stats, seen = RollingStats(capacity), []
    for _ in range(5 * capacity + 3):
        x = rng.gauss(100.0, 15.0)
        stats.push(x)
        seen.append(x)
        assert_matches_numpy(stats, seen[-capacity:])


def test_matches_numpy_on_real_eth_prices_with_the_default_window(eth_prices):
    stats = RollingStats(1000)
    for i, price in enumerate(eth_prices):
        stats.push(price)
        if i % 97 == 0:
            assert_matches_numpy(stats, eth_prices[max(0, i - 999):i + 1])
    assert_matches_numpy(stats, eth_prices[-1000:])


def test_stays_accurate_on_real_prices_at_a_large_level_over_many_windows(xrpeth_prices):
    # XRPETH prices are ~0.0014; scaled to BTC's level (~20,000) the spread is tiny relative to
    # the mean, which is where a sum-of-squares formula loses its digits.
    prices = [p * 1.4e7 for p in xrpeth_prices]
    stats = RollingStats(250)
    for price in prices:
        stats.push(price)
    assert_matches_numpy(stats, prices[-250:])


def test_log_returns_of_real_prices_match_numpy(xrpeth_prices):
    returns = [math.log(b / a) for a, b in zip(xrpeth_prices, xrpeth_prices[1:])]
    stats = RollingStats(1000)
    for r in returns:
        stats.push(r)
    assert_matches_numpy(stats, returns[-1000:])


def test_zscore_is_distance_in_standard_deviations_and_zero_without_spread():
    stats = RollingStats(4)
    for x in (1.0, 2.0, 3.0, 4.0):
        stats.push(x)
    assert stats.zscore(2.5 + 3 * np.std([1, 2, 3, 4])) == pytest.approx(3.0)
    flat = RollingStats(10)
    for _ in range(10):
        flat.push(5.0)
    assert flat.zscore(6.0) == 0.0


def test_survives_pickling_mid_stream():
    import pickle
    stats = RollingStats(5)
    for x in range(8):
        stats.push(float(x))
    restored = pickle.loads(pickle.dumps(stats))
    for x in (10.0, 11.0):
        stats.push(x)
        restored.push(x)
    assert (restored.mean, restored.std, restored.values) == (stats.mean, stats.std, stats.values)


def test_rolling_median_keeps_its_sorted_view_equal_to_the_window_through_repeats_and_evictions():
    import random
    from statistics import median

    from flink_jobs.features.windows import RollingMedian

    rng = random.Random(11)
    window = RollingMedian(50)
    for i in range(2_000):
        window.push(rng.choice([1.0, 2.0, 2.0, 0.5, rng.lognormvariate(0, 1)]))
        assert window.ordered == sorted(window.values)
        assert window.median == median(window.values)
    restored = RollingMedian.__new__(RollingMedian)
    restored.__setstate__(window.__getstate__())
    assert restored.ordered == window.ordered and len(restored) == 50
