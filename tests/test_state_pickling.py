"""Keyed state values survive PyFlink's cloudpickle round trip, in the new and the earlier format."""
import random

import cloudpickle

from flink_jobs.bars import OpenBars
from flink_jobs.features.symbol_state import SymbolState, observe
from flink_jobs.state_pickling import StdlibPickledList
from flink_jobs.trades import Trade


def trades(count, seed=7):
    rng, price = random.Random(seed), 100.0
    for i in range(count):
        price *= 1 + rng.gauss(0, 2e-4)
        yield Trade("ETHUSDT", i, round(price, 2), rng.lognormvariate(0, 1), 1_700_000_000_000 + 50 * i,
                    1_700_000_000_000 + 50 * i, rng.random() < 0.5)


def test_symbol_state_carries_on_after_a_cloudpickle_round_trip_exactly_as_if_never_saved():
    stream = list(trades(1_600))
    kept, saved = SymbolState(1_000), SymbolState(1_000)
    for trade in stream[:1_200]:
        observe(kept, trade)
        observe(saved, trade)
    restored = cloudpickle.loads(cloudpickle.dumps(saved))
    assert type(restored) is SymbolState
    for trade in stream[1_200:]:
        assert observe(restored, trade) == observe(kept, trade)


def test_symbol_state_saved_in_the_earlier_format_still_loads():
    state = SymbolState(1_000)
    stream = list(trades(300))
    for trade in stream[:200]:
        observe(state, trade)
    legacy_state = tuple(getattr(state, name) for name in SymbolState.__slots__)
    # The earlier __getstate__ returned the attributes themselves (lists and deques inside).
    old = SymbolState.__new__(SymbolState)
    old.__setstate__(cloudpickle.loads(cloudpickle.dumps(legacy_state)))
    for trade in stream[200:]:
        assert observe(old, trade) == observe(state, trade)


def test_open_bars_and_the_waiting_batch_round_trip_through_cloudpickle():
    bars = OpenBars()
    waiting = StdlibPickledList()
    for trade in trades(40):
        bars.add(trade, -2**63)
        waiting.append((trade, trade.price))
    bars_back = cloudpickle.loads(cloudpickle.dumps(bars))
    waiting_back = cloudpickle.loads(cloudpickle.dumps(waiting))
    assert bars_back.close_until(2**63 - 1, "ETHUSDT") == bars.close_until(2**63 - 1, "ETHUSDT")
    assert bars_back.timers == bars.timers and bars_back.next_end == bars.next_end
    assert type(waiting_back) is StdlibPickledList and waiting_back == waiting


def test_log_sizes_saved_as_a_plain_deque_load_into_the_ordered_window():
    import copy
    from collections import deque

    stream = list(trades(400))
    state = SymbolState(1_000)
    for trade in stream[:300]:
        observe(state, trade)
    attributes = {name: getattr(state, name) for name in SymbolState.__slots__}
    attributes["log_sizes"] = deque(state.log_sizes.values, maxlen=100)  # the earlier type
    old = SymbolState.__new__(SymbolState)
    old.__setstate__(copy.deepcopy(tuple(attributes[name] for name in SymbolState.__slots__)))
    assert old.log_sizes.ordered == sorted(state.log_sizes.values)
    for trade in stream[300:]:
        assert observe(old, trade) == observe(state, trade)
