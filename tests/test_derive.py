from producer.derive import derive_trades, epoch_ms, read_candles

from tests.conftest import sample_path

CANDLES = sample_path("BTCUSDC_1m_20230301_20230321.csv.gz")


def candles():
    return read_candles(CANDLES, epoch_ms("2023-03-11T00:00"), epoch_ms("2023-03-11T01:00"))


def test_reads_the_requested_window_of_real_candles():
    window = candles()
    assert len(window) == 60
    assert window[0].open_time_ms == epoch_ms("2023-03-11 00:00:00+00:00") == 1678492800000


def test_same_seed_same_trades_and_another_seed_other_trades():
    assert derive_trades(candles(), 3000, seed=7) == derive_trades(candles(), 3000, seed=7)
    assert derive_trades(candles(), 3000, seed=7) != derive_trades(candles(), 3000, seed=8)


def test_trades_stay_inside_their_candle_touch_its_extremes_and_follow_volume():
    window = candles()
    rows = derive_trades(window, 6000, seed=1)
    by_minute = {}
    for row in rows:
        by_minute.setdefault(row[4] // 60000 * 60000, []).append(row)
    total_volume = sum(c.volume for c in window)
    for c in window:
        trades = by_minute[c.open_time_ms]
        prices = [t[1] for t in trades]
        assert c.low - 1e-6 <= min(prices) and max(prices) <= c.high + 1e-6
        if len(trades) >= 4:
            assert min(prices) == c.low and max(prices) == c.high
        assert len(trades) == max(1, round(6000 * c.volume / total_volume))
        assert abs(sum(t[2] for t in trades) - c.volume) < 1e-4 * max(c.volume, 1)
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert [r[4] for r in rows] == sorted(r[4] for r in rows)


def test_scale_moves_prices_and_keeps_quote_volume():
    plain = derive_trades(candles(), 1000, seed=3)
    scaled = derive_trades(candles(), 1000, seed=3, scale=0.01)
    assert abs(scaled[10][1] - plain[10][1] * 0.01) < 1e-6 * plain[10][1]
    assert abs(sum(r[3] for r in scaled) - sum(r[3] for r in plain)) < 1e-3 * sum(r[3] for r in plain)
