"""The keyed state per symbol stays bounded (docs/scaling.md sizes the whole market from it)."""
from bench.state_size import DEFAULT_CSV, read_trades, state_sizes


def test_pickled_symbol_state_stops_growing_once_its_windows_are_full():
    trades = read_trades(DEFAULT_CSV, "ETHUSDT")
    sizes = state_sizes(trades, window=1000, passes=3)
    (n1, first), _, (n3, last) = sizes
    assert (n1, n3) == (1000, 3000)
    assert last <= first * 1.02, sizes          # 3x the trades, the same state
    assert 5_000 < last < 50_000, sizes         # the ~23 KB docs/scaling.md carries to 2,000 symbols


def test_a_smaller_window_keeps_less_state():
    trades = read_trades(DEFAULT_CSV, "ETHUSDT")
    assert state_sizes(trades, window=100, passes=1)[0][1] < state_sizes(trades, window=1000, passes=1)[0][1]
