"""Bar arithmetic and the lateness rule, with explicit watermarks (no Flink)."""
import pickle

import pytest

from flink_jobs.bars import OpenBars, window_start_ms
from flink_jobs.trades import Trade

T0 = 1675329600000  # 2023-02-02 09:20:00.000 UTC, a minute boundary


def trade(trade_id, ms, price, qty=1.0, buyer_maker=False):
    return Trade("ETHUSDT", trade_id, price, qty, T0 + ms, T0 + ms, buyer_maker)


def test_windows_are_epoch_aligned_and_half_open():
    assert window_start_ms(T0 + 999, 1) == T0 and window_start_ms(T0 + 1000, 1) == T0 + 1000
    assert window_start_ms(T0 + 59_999, 60) == T0 and window_start_ms(T0 - 1, 60) == T0 - 60_000


def test_a_bar_takes_open_and_close_by_trade_time_not_arrival_and_splits_taker_sides():
    bars = OpenBars()
    watermark = -2**63
    for t in (trade(1, 500, 10.0, 2.0), trade(2, 100, 12.0, 1.0, buyer_maker=True), trade(3, 900, 9.0, 1.0)):
        bars.add(t, watermark)
    (row_1s,) = [r for r in bars.close_until(T0 + 999, "ETHUSDT") if r[1] == 1]
    assert row_1s == ("ETHUSDT", 1, T0, 12.0, 12.0, 9.0, 9.0, 4.0, 41.0, 41.0 / 4.0, 3, 3.0, 1.0)
    # The minute is still open until the watermark passes its last millisecond.
    assert bars.close_until(T0 + 59_998, "ETHUSDT") == []
    (row_1m,) = bars.close_until(T0 + 59_999, "ETHUSDT")
    assert row_1m[1:3] == (60, T0) and row_1m[3:7] == (12.0, 12.0, 9.0, 9.0)


def test_a_trade_behind_the_watermark_joins_only_the_bars_still_open_and_says_which_it_missed():
    bars = OpenBars()
    opened, late = bars.add(trade(1, 1500, 10.0), watermark_ms=-2**63)
    assert sorted(opened) == [T0 + 2000, T0 + 60_000] and late == []
    bars.close_until(T0 + 1999, "ETHUSDT")
    # Watermark past the second [1000, 2000) but inside the minute: late for the 1 s bar only.
    opened, late = bars.add(trade(2, 1200, 11.0), watermark_ms=T0 + 2500)
    assert late == [1] and opened == []
    (minute,) = bars.close_until(T0 + 59_999, "ETHUSDT")
    assert minute[10] == 2 and minute[4] == 11.0
    # Past the minute too: late for both, in no bar.
    assert bars.add(trade(3, 1300, 50.0), watermark_ms=T0 + 60_000)[1] == [1, 60]
    assert bars.close_until(2**63 - 1, "ETHUSDT") == []


def test_repeated_trade_ids_are_recognised_like_the_scoring_operator_does():
    bars = OpenBars()
    bars.add(trade(7, 0, 1.0), -2**63)
    assert bars.is_repeat(trade(7, 0, 1.0)) and bars.is_repeat(trade(6, 5, 1.0))
    assert not bars.is_repeat(trade(8, 5, 1.0))


def test_open_bars_survive_the_pickling_of_flink_state():
    bars = OpenBars()
    bars.add(trade(1, 10, 10.0, 3.0), -2**63)
    restored = pickle.loads(pickle.dumps(bars))
    restored.add(trade(2, 20, 11.0, 1.0), -2**63)
    rows = restored.close_until(2**63 - 1, "ETHUSDT")
    assert [r[10] for r in rows] == [2, 2] and restored.last_trade_id == 2
    assert rows[0][9] == pytest.approx(41.0 / 4.0)
