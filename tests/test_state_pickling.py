"""Keyed state values survive PyFlink's cloudpickle round trip, in the new and the earlier format."""
import hashlib
import os
import pickle
import random
import struct

import cloudpickle
import pytest

from flink_jobs.bars import OpenBars
from flink_jobs.features.symbol_state import SymbolState, observe, observe_all
from flink_jobs.state_pickling import StdlibPickledList
from flink_jobs.trades import Trade

from tests.conftest import read_sample_trades
from tests.test_features import RECORDED_FEATURE_DIGESTS


def trades(count, seed=7):
    rng, price = random.Random(seed), 100.0
    for i in range(count):
        price *= 1 + rng.gauss(0, 2e-4)
        yield Trade("ETHUSDT", i, round(price, 2), rng.lognormvariate(0, 1), 1_700_000_000_000 + 50 * i,
                    1_700_000_000_000 + 50 * i, rng.random() < 0.5)


def xrpeth_trades():
    return [Trade("XRPETH", int(r[0]), float(r[1]), float(r[2]), int(r[4]), int(r[4]), r[5] == "true")
            for r in read_sample_trades("XRPETH-trades-2019-10-11.csv")]


@pytest.mark.parametrize("observed", [0, 1, 300, 1_000, 1_200])  # windows of 1,000: empty, filling, full
def test_symbol_state_carries_on_after_a_cloudpickle_round_trip_exactly_as_if_never_saved(observed):
    stream = list(trades(observed + 1_100))
    kept, saved = SymbolState(1_000), SymbolState(1_000)
    observe_all(kept, stream[:observed])
    observe_all(saved, stream[:observed])
    restored = cloudpickle.loads(cloudpickle.dumps(saved))
    assert type(restored) is SymbolState
    assert observe_all(restored, stream[observed:]) == observe_all(kept, stream[observed:])


def test_a_symbol_state_saves_only_the_filled_part_of_its_windows():
    stream = list(trades(1_001))
    sparse, full = SymbolState(1_000), SymbolState(1_000)
    observe_all(sparse, stream[:10])
    observe_all(full, stream)
    # price and return windows: 1,000 floats each once full, 10 and 9 after 10 trades
    assert len(pickle.dumps(full)) - len(pickle.dumps(sparse)) == (2_000 - 19) * 8


# SymbolState pickled by the interpreted layout before the compiled features (51b66d3 and earlier),
# in the forms savepoints held it, after the first N of the 5,000 real XRPETH trades
# (tests/fixtures/SOURCE.md): the rest of the trades must give the features the interpreted code
# recorded for the whole stream (tests/test_features.py), bit for bit.
INTERPRETED_LAYOUT = os.path.join(os.path.dirname(__file__), "fixtures", "symbol-state-interpreted-layout.pickle")


def interpreted_layout_pickles():
    with open(INTERPRETED_LAYOUT, "rb") as handle:
        return sorted(pickle.load(handle).items())


@pytest.mark.parametrize("form, window, observed, blob", [(*key, blob) for key, blob in interpreted_layout_pickles()],
                         ids=lambda value: str(value) if not isinstance(value, bytes) else "")
def test_symbol_state_saved_in_the_interpreted_layout_carries_on_bit_for_bit(form, window, observed, blob):
    trades = xrpeth_trades()
    digest = hashlib.sha256()
    for features in observe_all(SymbolState(window), trades[:observed]):
        digest.update(struct.pack("<17dq", *features))
    if form == "pickled":  # StdlibPickled: the class and the standard library's pickle of the 18 fields
        restored = cloudpickle.loads(blob)
    else:  # earlier still: the 18 fields pickled by cloudpickle, handed to __setstate__
        restored = SymbolState.__new__(SymbolState)
        restored.__setstate__(cloudpickle.loads(blob))
    assert type(restored) is SymbolState and restored.window == window
    assert restored.trades_seen == observed and restored.last_trade_id == trades[observed - 1].trade_id
    for features in observe_all(restored, trades[observed:]):
        digest.update(struct.pack("<17dq", *features))
    assert digest.hexdigest() == RECORDED_FEATURE_DIGESTS[window]


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


def test_open_bars_saved_with_bar_objects_restore_and_close_the_same_bars():
    """Before the nineteenth round of issue 7 OpenBars pickled its Bar objects themselves: a
    savepoint of then holds (bars, next end, timers)."""
    bars = OpenBars()
    for trade in trades(40):
        bars.add(trade, -2**63)
    earlier = OpenBars.__new__(OpenBars)
    earlier.__setstate__(pickle.loads(pickle.dumps((bars.bars, bars.next_end, bars.timers))))
    now = cloudpickle.loads(cloudpickle.dumps(bars))

    assert earlier.timers == now.timers == bars.timers and earlier.next_end == now.next_end == bars.next_end
    assert earlier.close_until(2**63 - 1, "ETHUSDT") == now.close_until(2**63 - 1, "ETHUSDT") == \
        bars.close_until(2**63 - 1, "ETHUSDT")
