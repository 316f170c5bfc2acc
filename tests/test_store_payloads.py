"""A scoring batch's trades on their way to the store: as rows (tuples) or, for a large batch, as
one Arrow stream built column by column (operators.trades_payload), and the store sink inserting
either, or both at once (a checkpoint of an earlier version holds rows), into the real chDB store."""
import math
import pickle

import numpy as np

from hypothesis import given, settings
from hypothesis import strategies as st

import config as app_config
from flink_jobs.features.symbol_state import SymbolState, observe_all
from flink_jobs.operators import COLUMNAR_MIN_ROWS, StoreSink, trade_row, trade_rows, trades_payload
from flink_jobs.scoring_batch import Batch, Chunk
from flink_jobs.store import arrow_stream, payload_rows, payloads_table, to_arrow
from flink_jobs.trades import Trade
from tests.test_score_batches import Context, RuntimeContext, call, scoring_operator, store_records

T0 = 1_700_000_000_000

prices = st.floats(min_value=1e-8, max_value=1e9, allow_nan=False)
sizes = st.floats(min_value=1e-8, max_value=1e6, allow_nan=False)
scores = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.just(math.nan))


def scored(moves: list) -> tuple[list, list, list]:
    """Trades of one symbol from (price, size, score, maker, gap ms), their features and scores."""
    state, trades, when = SymbolState(50), [], T0
    for i, (price, size, _, maker, gap) in enumerate(moves):
        when += gap
        trades.append(Trade("SOLUSDT", 10**12 + i, price, size, when, when + 3, maker))
    return trades, observe_all(state, trades), [score for _, _, score, _, _ in moves]


def as_batch(trades: list, features: list, cut: int) -> Batch:
    """The trades as a scoring batch of two chunks, cut at `cut` (a chunk per call of the symbol)."""
    pairs = list(zip(trades, features))
    return Batch([chunk for chunk in (Chunk.from_pairs(trades[0].symbol, pairs[:cut]),
                                      Chunk.from_pairs(trades[0].symbol, pairs[cut:])) if len(chunk)])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(prices, sizes, scores, st.booleans(), st.integers(0, 5_000)), min_size=1, max_size=300),
       st.sampled_from(["", "20260101T000000Z"]), st.integers(0, 300))
def test_a_batch_s_arrow_stream_and_tuples_hold_exactly_its_rows_values(moves, version, cut):
    """Bit for bit (the stream's bytes): every column in its place, quote_qty the same product,
    NaN and infinite scores, the float32 columns rounded the same way; the tuples of a small batch
    are trade_row's."""
    trades, features, if_scores = scored(moves)
    scoring = as_batch(trades, features, cut)

    payload = trades_payload(scoring, np.array(if_scores, dtype=np.float64), version)

    rows = [trade_row(t, f, s, version)[1] for t, f, s in zip(trades, features, if_scores)]
    assert payload == arrow_stream(to_arrow("trades", rows))
    assert payload_rows(payload) == len(rows)
    assert repr(trade_rows(scoring, if_scores, version)) == repr(rows)   # repr: NaN != NaN


def test_only_a_batch_of_at_least_columnar_min_rows_travels_as_a_stream():
    for size, columnar in ((COLUMNAR_MIN_ROWS - 1, False), (COLUMNAR_MIN_ROWS, True)):
        operator, state = scoring_operator(batch_size=size)
        ((table, payload),) = store_records(call(operator, state, "BTCUSDT", list(range(1, size + 1))))
        assert (table, isinstance(payload, bytes)) == ("trades", columnar)
        assert payloads_table(table, [payload]).column("trade_id").to_pylist() == list(range(1, size + 1))


def test_z_score_alone_waits_for_the_micro_batch_too():
    """With no model the batch still gathers the calls' trades into one store record: a record
    per call cost sparse symbols 40% of the throughput (docs/performance.md, "Nineteenth round")."""
    operator, state = scoring_operator(batch_size=6)
    assert operator.models is None
    assert store_records(call(operator, state, "BTCUSDT", [1, 2, 3])) == []
    records = store_records(call(operator, state, "ETHUSDT", [1, 2, 3, 4, 5]))
    assert [(table, payload_rows(rows)) for table, rows in records] == [("trades", 6)]


class ListState:
    """Flink's list state: values kept pickled, handed back unpickled."""

    def __init__(self):
        self.blobs = []

    def add(self, value):
        self.blobs.append(pickle.dumps(value))

    def get(self):
        return [pickle.loads(blob) for blob in self.blobs]

    def clear(self):
        self.blobs = []


class SinkContext(RuntimeContext):
    """The scoring tests' runtime context, handing out list state as the store sink asks for it."""

    def get_list_state(self, descriptor):
        return self.state


def test_the_sink_inserts_rows_and_streams_of_a_table_together_and_counts_both(tmp_path):
    cfg = app_config.load({"CHDB_PATH": str(tmp_path / "chdb"), "SINK_BATCH_SIZE": "100000"})
    trades, features, if_scores = scored([(100.0 + i, 1.0, 0.1, i % 2 == 0, 10) for i in range(200)])
    as_rows = [trade_row(t, f, s, "v1")[1] for t, f, s in zip(trades[:70], features, if_scores)]
    as_stream = trades_payload(as_batch(trades[70:], features[70:], 60), np.array(if_scores[70:]), "v1")
    sink = StoreSink(cfg.store)
    sink.open(SinkContext(ListState()))
    try:
        sink.process_element(("trades", as_rows), Context(0))      # restored from an earlier version
        sink.process_element(("trades", as_stream), Context(0))
        assert sink.buffered == 200
        sink._flush()
        stored = sink.store.query("SELECT trade_id, price, quote_qty, model_version FROM trades ORDER BY trade_id")
    finally:
        sink.close()
    assert [r["trade_id"] for r in stored] == [t.trade_id for t in trades]
    assert [(r["price"], r["quote_qty"], r["model_version"]) for r in stored] == \
        [(t.price, t.price * t.qty, "v1") for t in trades]
