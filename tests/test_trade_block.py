"""Trade blocks (flink_jobs/trade_block.py) and the scoring chunks that hold them."""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flink_jobs.features.symbol_state import SymbolState, observe_all
from flink_jobs.scoring_batch import OUT_COLUMNS, Chunk
from flink_jobs.trade_block import BYTES_PER_TRADE, block_of, from_tuples, pack, unpack
from flink_jobs.trades import MAX_TRADE_ID, Trade

T0 = 1_700_000_000_000

trades_strategy = st.lists(st.tuples(
    st.integers(0, MAX_TRADE_ID), st.floats(min_value=1e-12, max_value=1e15),
    st.floats(min_value=1e-12, max_value=1e15), st.integers(0, 2**62), st.integers(0, 2**62), st.booleans()),
    max_size=40)


@settings(max_examples=200, deadline=None)
@given(trades_strategy)
def test_a_block_gives_back_every_field_with_python_s_types(fields):
    trades = [Trade("BTCUSDT", *values) for values in fields]
    columns = unpack(block_of(trades))

    assert columns.size == len(trades)
    # repr: the same values and types (an int stays an int, a bool a bool, floats bit for bit)
    assert repr(columns.tuples("BTCUSDT")) == repr([tuple(t) for t in trades])
    assert all(column.flags.writeable for column in columns)


def test_a_block_is_whole_trades_or_refused():
    block = block_of([Trade("BTCUSDT", 1, 100.0, 1.0, T0, T0, False)])
    assert len(block) == BYTES_PER_TRADE and unpack(b"").size == 0
    with pytest.raises(ValueError, match="not whole trades"):
        unpack(block[:-1])


def trades_of(symbol: str, count: int) -> list[Trade]:
    return [Trade(symbol, i, 100.0 + i % 7, 0.5 + i % 3, T0 + 10 * i, T0 + 10 * i + 1, i % 2 == 0)
            for i in range(1, count + 1)]


def chunk_of(trades: list[Trade]) -> Chunk:
    columns = from_tuples(trades)
    features = np.array([tuple(f) for f in observe_all(SymbolState(50), trades)], dtype=np.float64)
    return Chunk(trades[0].symbol, columns, features.reshape(-1, OUT_COLUMNS))


def test_a_chunk_cuts_keeps_and_names_its_trades_as_the_tuples_would():
    trades = trades_of("ETHUSDT", 30)
    chunk = chunk_of(trades)

    piece = chunk.rows(10, 25)
    assert piece.trades == [tuple(t) for t in trades[10:25]]
    assert piece.features.tolist() == chunk.features[10:25].tolist()
    kept = chunk.keep(np.arange(30) % 3 == 0)
    assert kept.trade_ids() == [t.trade_id for t in trades[::3]]
    assert kept.trade(2) == trades[6] and type(kept.trade(2).trade_id) is int


def test_a_waiting_chunk_survives_a_checkpoint_in_this_layout_and_in_the_fifteenth_round_s():
    chunk = chunk_of(trades_of("SOLUSDT", 12))

    restored = pickle.loads(pickle.dumps(chunk))
    assert restored.trades == chunk.trades and restored.features.tolist() == chunk.features.tolist()
    # The fifteenth round pickled a chunk as (symbol, trade tuples, feature matrix bytes).
    earlier = Chunk.__new__(Chunk)
    earlier.__setstate__((chunk.symbol, chunk.trades, chunk.features.tobytes()))
    assert earlier.trades == chunk.trades and earlier.features.tolist() == chunk.features.tolist()
    assert [list(c) for c in earlier.columns] == [list(c) for c in chunk.columns]
    assert pickle.loads(pickle.dumps(earlier)).trades == chunk.trades


def test_pack_takes_any_sequences_in_field_order():
    columns = from_tuples(trades_of("XRPUSDT", 3))
    assert unpack(pack([list(c) for c in columns])).tuples("XRPUSDT") == columns.tuples("XRPUSDT")
