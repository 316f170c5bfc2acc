"""Bar arithmetic and the lateness rule, with explicit watermarks (no Flink)."""
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flink_jobs.bars import SWEEP_MS, OpenBars, sweep_instant, window_start_ms
from flink_jobs.scoring_batch import OUT_COLUMNS, Chunk
from flink_jobs.trade_block import from_tuples
from flink_jobs.trades import Trade

T0 = 1675329600000  # 2023-02-02 09:20:00.000 UTC, a minute boundary


def trade(trade_id, ms, price, qty=1.0, buyer_maker=False):
    return Trade("ETHUSDT", trade_id, price, qty, T0 + ms, T0 + ms, buyer_maker)


def _chunk(trades, as_tuples=False):
    """A scoring call's trades as OpenBars.add_all takes them (features play no part in bars)."""
    import numpy as np

    return Chunk("ETHUSDT", from_tuples(trades), np.zeros((len(trades), OUT_COLUMNS)),
                 [tuple(t) for t in trades] if as_tuples else None)


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
    timers, late = bars.add(trade(1, 1500, 10.0), watermark_ms=-2**63)
    assert sorted(timers) == [T0 + SWEEP_MS - 1, T0 + 59_999] and late == []
    bars.close_until(T0 + 1999, "ETHUSDT")
    # Watermark past the second [1000, 2000) but inside the minute: late for the 1 s bar only.
    timers, late = bars.add(trade(2, 1200, 11.0), watermark_ms=T0 + 2500)
    assert late == [1] and timers == []
    (minute,) = bars.close_until(T0 + 59_999, "ETHUSDT")
    assert minute[10] == 2 and minute[4] == 11.0
    # Past the minute too: late for both, in no bar.
    assert bars.add(trade(3, 1300, 50.0), watermark_ms=T0 + 60_000)[1] == [1, 60]
    assert bars.close_until(2**63 - 1, "ETHUSDT") == []


def test_sweep_timers_fall_on_a_coarse_grid_and_are_registered_once_per_instant():
    assert sweep_instant(T0 + 1000) == T0 + SWEEP_MS - 1            # a second's bar: the end of its slot
    assert sweep_instant(T0 + SWEEP_MS) == T0 + SWEEP_MS - 1        # ending on the grid: that instant
    assert sweep_instant(T0 + 60_000) == T0 + 59_999                 # a minute's bar: its own end
    bars = OpenBars()
    assert sorted(bars.add(trade(1, 100, 10.0), -2**63)[0]) == [T0 + SWEEP_MS - 1, T0 + 59_999]
    # Eight more seconds of one trade each: eight 1 s bars, not one new timer.
    for second in range(1, 9):
        assert bars.add(trade(1 + second, second * 1000, 10.0), -2**63)[0] == []
    assert bars.add(trade(20, SWEEP_MS + 5, 10.0), -2**63)[0] == [T0 + 2 * SWEEP_MS - 1]
    bars.swept(T0 + SWEEP_MS - 1)
    assert bars.timers == {T0 + 2 * SWEEP_MS - 1, T0 + 59_999}


def test_bars_close_as_the_symbol_trades_once_the_watermark_passes_them_without_waiting_for_a_timer():
    bars = OpenBars()
    bars.add(trade(1, 100, 10.0), -2**63)
    assert not bars.due(T0 + 998) and bars.close_until(T0 + 998, "ETHUSDT") == []
    assert bars.due(T0 + 999)
    (second,) = bars.close_until(T0 + 1500, "ETHUSDT")
    assert second[1:3] == (1, T0) and not bars.due(T0 + 1500)
    assert bars.due(T0 + 59_999)
    (minute,) = bars.close_until(2**63 - 1, "ETHUSDT")
    assert minute[1:3] == (60, T0) and bars.bars == {} and not bars.due(T0 + 10**12)


def test_open_bars_survive_the_pickling_of_flink_state():
    bars = OpenBars()
    bars.add(trade(1, 10, 10.0, 3.0), -2**63)
    restored = pickle.loads(pickle.dumps(bars))
    restored.add(trade(2, 20, 11.0, 1.0), -2**63)
    rows = restored.close_until(2**63 - 1, "ETHUSDT")
    assert [r[10] for r in rows] == [2, 2] and restored.timers == {T0 + SWEEP_MS - 1, T0 + 59_999}
    assert rows[0][9] == pytest.approx(41.0 / 4.0)


def test_open_bars_saved_before_the_sweep_grid_restore_with_their_next_end():
    bars = OpenBars()
    bars.add(trade(1, 1500, 10.0), -2**63)
    legacy = OpenBars.__new__(OpenBars)
    legacy.__setstate__((bars.bars, 1))  # the earlier state: (bars, last trade id)
    assert legacy.timers == set() and legacy.next_end == T0 + 2000
    assert [r[1] for r in legacy.close_until(2**63 - 1, "ETHUSDT")] == [1, 60]


def _state(bars):
    return sorted(bars.timers), bars.next_end, sorted((key, bar.__getstate__()) for key, bar in bars.bars.items())


TRADE_FIELDS = st.tuples(st.integers(0, 153_000), st.sampled_from([0.1, 0.3, 10.0, 1e-8, 12345.678]),
                         st.sampled_from([0.001, 0.7, 3.0, 1e-5]), st.booleans())


@settings(max_examples=300, deadline=None)
@given(calls=st.lists(st.tuples(
    st.sampled_from([2_500, 20_000, 153_000]),   # how far the call's trades spread: 1 to 60 windows
    st.one_of(st.lists(TRADE_FIELDS, min_size=1, max_size=5), st.lists(TRADE_FIELDS, min_size=16, max_size=80)),
    st.integers(-5_000, 120_000)), min_size=1, max_size=4))
def test_a_call_s_trades_added_together_make_the_bars_they_make_one_by_one(calls):
    """add_all's array path (many trades per window) and its fallback (spread out or few) against
    `add` trade by trade: the same bars bit for bit, the same timers, the same late trades."""
    together, one_by_one, trade_id = OpenBars(), OpenBars(), 0
    for spread, fields, watermark_offset in calls:
        trades = []
        for ms, price, qty, maker in fields:
            trade_id += 1
            trades.append(trade(trade_id, ms % spread - 3_000, price, qty, maker))
        watermark = T0 + watermark_offset
        expected_timers, expected_late = [], {}
        for row, t in enumerate(trades):
            timers, late = one_by_one.add(t, watermark)
            expected_timers += timers
            if late:
                expected_late[row] = late
        # The tuples as the parser sent a few trades, or made from the columns of a block
        timers, late = together.add_all(_chunk(trades, as_tuples=len(calls) % 2 == 1), watermark)
        assert sorted(timers) == sorted(expected_timers) and late == expected_late
        assert repr(_state(together)) == repr(_state(one_by_one))
        closed = together.close_until(watermark + 1_000, "ETHUSDT")
        assert repr(closed) == repr(one_by_one.close_until(watermark + 1_000, "ETHUSDT"))


def test_many_trades_in_few_windows_take_the_array_path():
    """The property above must cover the array path: a call of 40 trades in two seconds does."""
    from flink_jobs.bars import COLUMNAR_MIN_TRADES, TRADES_PER_WINDOW

    trades = [trade(i, i * 50, 10.0 + i % 7, 0.5 + i % 3, i % 2 == 0) for i in range(40)]
    assert len(trades) >= COLUMNAR_MIN_TRADES and 40 // TRADES_PER_WINDOW >= 2
    bars, calls = OpenBars(), []
    original = OpenBars._join_rows
    OpenBars._join_rows = lambda self, *args: calls.append(args[0]) or original(self, *args)
    try:
        bars.add_all(_chunk(trades), -2**63)
    finally:
        OpenBars._join_rows = original
    assert calls == [1, 1, 60]
