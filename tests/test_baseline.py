import math

import numpy as np

from bench.baseline import rolling_price_z


def test_rolling_price_z_matches_a_plain_loop_on_real_prices(xrpeth_prices):
    prices = np.array(xrpeth_prices[:2500]) * 1.4e7  # at BTC's price level
    z, n = rolling_price_z(prices)
    for i in range(2, 2500, 53):
        window = prices[max(0, i - 1000):i]
        assert n[i] == len(window)
        expected = (prices[i] - window.mean()) / window.std() if window.std() > 0 else 0.0
        assert math.isclose(z[i], expected, rel_tol=1e-6, abs_tol=1e-9)
