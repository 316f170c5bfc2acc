"""The scoring operator taking a symbol's trades of a parse batch in one call (flink_jobs/operators.py).

A trade waits in the subtask's micro-batch and in its symbol's keyed record until the batch is
scored: a checkpoint taken meanwhile must hold it, or a restore loses it. Flink's keyed state,
timers and metrics are stood in for by the small fakes below; the operator's own code is real."""
import math
import pickle
import zlib

import pytest

from pyflink.common import Row
from pyflink.datastream import OutputTag, TimeDomain
from pyflink.fn_execution import coders

import config as app_config
from flink_jobs.detectors.methods import Candidate
from flink_jobs.detectors.offline import detect
from flink_jobs.features.symbol_state import TradeFeatures
from flink_jobs.operators import (END_OF_INPUT, ApplyCooldown, ScoreTrades, anomaly_row, pack_candidates,
                                  pickled_sink_key, unpack_candidates)
from flink_jobs.store import payloads_table
from flink_jobs.trade_block import block_of
from flink_jobs.trades import Trade

T0 = 1_700_000_000_000


class KeyedValue:
    """One ValueState per key, stored pickled, as Flink hands the value back after a restore."""

    def __init__(self):
        self.by_key, self.key = {}, None

    def value(self):
        blob = self.by_key.get(self.key)
        return None if blob is None else pickle.loads(blob)

    def update(self, value):
        self.by_key[self.key] = pickle.dumps(value)

    def restored(self, key):
        return pickle.loads(self.by_key[key])


class Metrics:
    def counter(self, name):
        return self

    def gauge(self, name, read):
        pass

    def inc(self, n=1):
        pass


class RuntimeContext:
    def __init__(self, state):
        self.state = state

    def get_state(self, descriptor):
        return self.state

    def get_metrics_group(self):
        return Metrics()


class Timers:
    def current_processing_time(self):
        return 0

    def current_watermark(self):
        return -(2**63)

    def register_processing_time_timer(self, instant):
        pass

    def register_event_time_timer(self, instant):
        pass


class Context:
    def __init__(self, key):
        self.key = key

    def get_current_key(self):
        return self.key

    def timer_service(self):
        return Timers()


def scoring_operator(sink_parallelism: int = 1, batch_size: int = 4) -> tuple[ScoreTrades, KeyedValue]:
    """Scored by z-score only (no model file needed): trades wait for micro-batches of
    `batch_size` as with the forest on."""
    cfg = app_config.load({}, detection={"methods": ("zscore",), "iforest_batch_size": batch_size,
                                         "iforest_batch_ms": 10_000})
    state = KeyedValue()
    operator = ScoreTrades(cfg.detection, bars=False, sink_parallelism=sink_parallelism)
    operator.open(RuntimeContext(state))
    return operator, state


@pytest.fixture
def scoring():
    return scoring_operator()


def trades(symbol, ids):
    return [tuple(Trade(symbol, i, 100.0 + i, 1.0, T0 + i, T0 + i, False)) for i in ids]


def call(operator, state, symbol, ids):
    state.key = symbol
    return list(operator.process_element(block_of(trades(symbol, ids)), Context(symbol)))


def waiting(state, symbol):
    return [trade_id for chunk in state.restored(symbol).waiting for trade_id in chunk.trade_ids()]


def pending(operator):
    return [trade_id for chunk in operator.pending for trade_id in chunk.trade_ids()]


def store_records(out):
    """The store records among an operator's output, each checked for its sink key (parallelism 1: 0)."""
    records = [item for item in out if not isinstance(item[0], OutputTag)]
    assert all(key == 0 for key, _ in records)
    return [record for _, record in records]


def scored_ids(out):
    return [trade_id for table, rows in store_records(out) if table == "trades"
            for trade_id in payloads_table(table, [rows]).column("trade_id").to_pylist()]


def test_store_records_carry_the_sink_key_of_their_first_row_s_symbol():
    """The Java key selector in front of the store sink reads field 0: with several sink subtasks
    (a ClickHouse server) a batch goes where its first row's symbol says."""
    operator, state = scoring_operator(sink_parallelism=3)

    out = call(operator, state, "BTCUSDT", [1, 2, 3, 4])
    out += call(operator, state, "XRPUSDT", [1, 2, 3, 4])

    assert [(key, payloads_table(record[0], [record[1]]).column("symbol")[0].as_py()) for key, record in out] == [
        (zlib.crc32(b"BTCUSDT") % 3, "BTCUSDT"), (zlib.crc32(b"XRPUSDT") % 3, "XRPUSDT")]
    assert len({key for key, _ in out}) == 2   # the two symbols land on different subtasks


def test_a_sink_key_made_for_java_is_the_bytes_a_python_operator_sends():
    """Dead letters get their sink key in Java (anomaly_job.parse_in_batches); different bytes for
    the same key would make it a second key in the sink's state."""
    record = ("dead_letters", [("parse", "reason", "raw", "", -1, 0)])
    # PyFlink encodes a Python operator's pickled fields with this coder (coders.from_type_info_proto).
    sent = coders.RowCoder([coders.CloudPickleCoder(), coders.CloudPickleCoder()], ["key", "record"]) \
        .get_impl().encode(Row(0, record))

    key = pickled_sink_key("parse", 1)
    # After the row's header byte (row kind and null mask): the field's length, then its bytes.
    assert sent[1:].startswith(len(key).to_bytes(4, "big") + key)


def test_trades_after_a_flush_within_one_call_stay_in_the_symbol_s_record(scoring):
    operator, state = scoring

    out = call(operator, state, "BTCUSDT", [1, 2, 3, 4, 5, 6])   # the batch of 4 is scored mid-call
    assert scored_ids(out) == [1, 2, 3, 4]
    assert pending(operator) == [5, 6]
    assert waiting(state, "BTCUSDT") == [5, 6]

    out = call(operator, state, "BTCUSDT", [7])                  # the next call must not drop 5 and 6
    assert scored_ids(out) == []
    assert pending(operator) == [5, 6, 7]
    assert waiting(state, "BTCUSDT") == [5, 6, 7]


def test_another_symbol_s_flush_empties_this_symbol_s_waiting_trades_on_its_next_call(scoring):
    operator, state = scoring

    call(operator, state, "BTCUSDT", [1, 2])
    out = call(operator, state, "ETHUSDT", [1, 2])                # fills the batch: BTC's 1 and 2 go too
    assert sorted(scored_ids(out)) == [1, 1, 2, 2]
    assert waiting(state, "BTCUSDT") == [1, 2]                   # still in BTC's record until it is touched

    call(operator, state, "BTCUSDT", [3])
    assert waiting(state, "BTCUSDT") == [3]
    assert pending(operator) == [3]


def test_a_call_scores_the_same_trades_as_one_call_per_trade(scoring):
    operator, state = scoring
    batched = scored_ids(call(operator, state, "SOLUSDT", list(range(1, 10))))

    one_by_one = []
    single, single_state = scoring_operator()
    for i in range(1, 10):
        one_by_one += scored_ids(call(single, single_state, "SOLUSDT", [i]))

    assert batched == one_by_one == list(range(1, 9))
    assert waiting(state, "SOLUSDT") == waiting(single_state, "SOLUSDT") == [9]


class EndOfInputContext(Context):
    """The end of a bounded input: Flink fires every event-time timer with the last watermark."""

    def time_domain(self):
        return TimeDomain.EVENT_TIME


def test_the_end_of_input_scores_the_waiting_trades_and_clears_them_from_the_record(scoring):
    operator, state = scoring
    call(operator, state, "BTCUSDT", [1, 2])                      # below the batch size: they wait
    assert waiting(state, "BTCUSDT") == [1, 2]

    out = list(operator.on_timer(END_OF_INPUT, EndOfInputContext("BTCUSDT")))
    assert scored_ids(out) == [1, 2]
    assert waiting(state, "BTCUSDT") == [] and pending(operator) == []


def test_bars_closed_at_once_leave_in_records_of_a_bounded_size():
    """A watermark jump (the end of a bounded input) closes every open bar of a symbol at once:
    the store sink takes a record whole, so its buffer is bounded only if records are."""
    from flink_jobs.operators import MAX_BAR_ROWS_PER_RECORD

    cfg = app_config.load({}, detection={"methods": ("zscore",)})
    state = KeyedValue()
    operator = ScoreTrades(cfg.detection, bars=True)
    operator.open(RuntimeContext(state))
    state.key = "BTCUSDT"
    seconds = 2 * MAX_BAR_ROWS_PER_RECORD + 10      # one trade per second: a 1-second bar each
    call_trades = [tuple(Trade("BTCUSDT", i, 100.0, 1.0, T0 + i * 1000, 0, False)) for i in range(seconds)]
    list(operator.process_element(block_of(call_trades), Context("BTCUSDT")))   # the watermark is at its start

    out = list(operator.on_timer(END_OF_INPUT, EndOfInputContext("BTCUSDT")))
    bar_records = [rows for table, rows in store_records(out) if table == "bars"]
    one_second_bars = sorted(row[2] for rows in bar_records for row in rows if row[1] == 1)
    assert one_second_bars == [T0 + i * 1000 for i in range(seconds)]      # all of them, once
    assert len(bar_records) == 3 and max(len(rows) for rows in bar_records) == MAX_BAR_ROWS_PER_RECORD


def candidate_records(out):
    return [(symbol, unpack_candidates(packed)) for tag, (symbol, packed) in out if isinstance(tag, OutputTag)]


def test_a_symbol_s_candidates_of_one_batch_leave_as_one_record_in_trade_order():
    """A burst makes nearly every trade a candidate; one record per symbol and batch keeps that
    cheap. Grouped, the candidates must still be all of them, in each symbol's trade order."""
    cfg = app_config.load({}, detection={"methods": ("zscore",), "iforest_batch_size": 1000,
                                         "iforest_batch_ms": 10_000, "window_size": 10, "min_history": 5,
                                         "cooldown_seconds": 0})
    state = KeyedValue()
    operator = ScoreTrades(cfg.detection, bars=False)
    operator.open(RuntimeContext(state))
    sent = []
    for i in range(1, 91):
        for symbol in ("BTCUSDT", "ETHUSDT"):
            jump = 1.05 if i % 15 == 0 else 1.0 + (i % 3) * 1e-4   # a 5% jump every 15th trade
            trade = Trade(symbol, i, 100.0 * jump, 1.0 + i % 4, T0 + 10 * i, T0 + 10 * i, i % 2 == 0)
            sent.append(trade)
            state.key = symbol
            list(operator.process_element(block_of([trade]), Context(symbol)))
    state.key = "BTCUSDT"
    out = list(operator.on_timer(END_OF_INPUT, EndOfInputContext("BTCUSDT")))

    records = candidate_records(out)
    _, reference = detect(sent, cfg.detection)   # cooldown 0: every candidate
    assert [symbol for symbol, _ in records] == ["BTCUSDT", "ETHUSDT"]
    for symbol, anomalies in records:
        assert [(a.trade.trade_id, a.method) for a in anomalies] == \
            [(a.trade.trade_id, a.method) for a in reference if a.trade.symbol == symbol]
    assert sum(len(anomalies) for _, anomalies in records) == len(reference) >= 10

    # The cooldown writes the reasons of those it lets through: the rows, reasons included, are
    # the offline reference's.
    cooldown = ApplyCooldown(cfg.detection)
    cooldown_state = KeyedValue()
    cooldown.open(RuntimeContext(cooldown_state))
    rows = []
    for symbol, found in records:
        cooldown_state.key = symbol
        for _, anomaly_rows in store_records(cooldown.process_element(pack_candidates(found), Context(symbol))):
            rows += anomaly_rows
    expected = [anomaly_row(a)[1] for a in reference]
    assert sorted(map(repr, rows)) == sorted(map(repr, expected))   # repr: the scores are NaN, and NaN != NaN
    assert all("return z-score" in row[8] for row in rows)


def candidate_at(time_ms: int, method: str = "zscore", trade_id: int = 1) -> Candidate:
    features = TradeFeatures._make([0.0] * (len(TradeFeatures._fields) - 1) + [100])
    trade = Trade("BTCUSDT", trade_id, 100.0, 1.0, time_ms, time_ms, False)
    return Candidate(trade, features, method, math.nan, "", None)


def cooldown_operator():
    cfg = app_config.load({}, detection={"methods": ("zscore", "iforest"), "cooldown_seconds": 1})
    state = KeyedValue()
    state.key = "BTCUSDT"
    operator = ApplyCooldown(cfg.detection)
    operator.open(RuntimeContext(state))
    return operator


def passed(out):
    return [(row[1], row[3]) for table, rows in store_records(out) for row in rows]


def test_the_cooldown_lets_through_of_a_batch_what_it_lets_through_one_by_one():
    times = [(0, "zscore"), (300, "zscore"), (400, "iforest"), (1000, "zscore"), (1200, "iforest"),
             (1300, "zscore"), (2500, "zscore"), (2600, "iforest")]
    anomalies = [candidate_at(t, method, trade_id) for trade_id, (t, method) in enumerate(times, start=1)]

    grouped = cooldown_operator()
    out = grouped.process_element(pack_candidates(anomalies[:5]), Context("BTCUSDT"))
    out += grouped.process_element(pack_candidates(anomalies[5:]), Context("BTCUSDT"))   # the state carries over

    one_by_one = cooldown_operator()
    single_out = [item for a in anomalies
                  for item in one_by_one.process_element(pack_candidates([a]), Context("BTCUSDT"))]

    assert passed(out) == passed(single_out) == [(1, "zscore"), (3, "iforest"), (4, "zscore"),
                                                 (7, "zscore"), (8, "iforest")]
    assert len(store_records(out)) == 2   # one store record per batch


def test_packed_candidates_come_back_equal_each_trade_s_methods_sharing_its_trade():
    features = TradeFeatures._make([float(i) for i in range(len(TradeFeatures._fields) - 1)] + [100])
    trade = Trade("BTCUSDT", 7, 100.5, 0.25, T0, T0 + 1, True)
    other = trade._replace(trade_id=8)
    found = [Candidate(trade, features, "zscore", -0.1, "v1", None),
             Candidate(trade, features, "combined", -0.1, "v1", "volume z-score +9.0 beyond the +3.9"),
             Candidate(other, features, "iforest", math.nan, "", None)]
    back = unpack_candidates(pack_candidates(found))
    assert [c._replace(if_score=repr(c.if_score)) for c in back] == \
        [c._replace(if_score=repr(c.if_score)) for c in found]   # NaN != NaN, its repr is
    assert all(type(c.trade) is Trade and type(c.features) is TradeFeatures for c in back)
    assert back[0].trade is back[1].trade and back[2].trade is not back[0].trade


@pytest.mark.parametrize("saved, sent, scored, left", [
    ([1, 2, 3], [4], [1, 2, 3, 4], []),                 # the restored three and one new fill the batch of 4
    ([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12], list(range(1, 12)), [12]),   # restored beyond the batch size
])
def test_trades_a_previous_version_left_waiting_as_pairs_are_scored_after_a_restore(saved, sent, scored, left):
    """Before the columnar batch (fifteenth round of issue 7) a record held its waiting trades as
    (Trade, TradeFeatures) pairs: a savepoint of that version restores them, ahead of new trades,
    with the features they had."""
    from flink_jobs.features.symbol_state import SymbolState, observe_all
    from flink_jobs.scoring_state import SymbolRecord

    saved_trades = [Trade._make(t) for t in trades("BTCUSDT", saved)]
    features = SymbolState(app_config.load({}).detection.window_size)
    pairs = list(zip(saved_trades, observe_all(features, saved_trades)))
    operator, state = scoring_operator()
    state.key = "BTCUSDT"
    state.update(SymbolRecord(features, None, pairs))

    out = call(operator, state, "BTCUSDT", sent)

    assert scored_ids(out) == scored
    stored = payloads_table("trades", [rows for table, rows in store_records(out)]).to_pylist()
    assert [(row["log_return"], row["price_mean"]) for row in stored[:len(saved)]] == \
        [(f.log_return, f.price_mean) for _, f in pairs]
    assert waiting(state, "BTCUSDT") == pending(operator) == left


class WatermarkTimers(Timers):
    def __init__(self):
        self.at = -(2**63)

    def current_watermark(self):
        return self.at


class WatermarkContext(Context):
    def __init__(self, key, timers):
        super().__init__(key)
        self.timers = timers

    def timer_service(self):
        return self.timers


def bars_operator(state: KeyedValue | None = None) -> tuple[ScoreTrades, KeyedValue]:
    """Trades wait for micro-batches of 4 (as with the forest on); bars on."""
    cfg = app_config.load({}, detection={"methods": ("zscore",), "iforest_batch_size": 4, "iforest_batch_ms": 10_000})
    state = state or KeyedValue()
    operator = ScoreTrades(cfg.detection, bars=True)
    operator.open(RuntimeContext(state))
    return operator, state


def trade_at(operator, state, timers, symbol, trade_id, second):
    """One trade at T0 + `second` s, with the watermark just behind it (as the job's lag has it)."""
    timers.at = max(timers.at, T0 + second * 1000 - 1)
    state.key = symbol
    trade = tuple(Trade(symbol, trade_id, 100.0 + trade_id, 1.0, T0 + second * 1000, T0, False))
    return list(operator.process_element([trade], WatermarkContext(symbol, timers)))


def bar_rows(out):
    return [(row[0], row[1], row[2]) for table, rows in store_records(out) if table == "bars" for row in rows]


def test_closed_bars_wait_in_the_symbol_s_record_and_leave_with_the_batch_in_one_record():
    """A sparse symbol closes a 1-second bar at nearly every trade: the rows join the micro-batch
    and leave with its trades, one record for all its symbols, and until then a checkpoint must
    hold them in the symbol's record."""
    operator, state = bars_operator()
    timers = WatermarkTimers()
    out = trade_at(operator, state, timers, "BTCUSDT", 1, 0)
    out += trade_at(operator, state, timers, "ETHUSDT", 1, 0)
    out += trade_at(operator, state, timers, "BTCUSDT", 2, 1)        # closes BTC's bar of second 0
    assert bar_rows(out) == []
    assert [row[2] for row in state.restored("BTCUSDT").closed] == [T0]

    out = trade_at(operator, state, timers, "ETHUSDT", 2, 1)         # ETH's bar closes, the batch of 4 fills
    assert sorted(bar_rows(out)) == [("BTCUSDT", 1, T0), ("ETHUSDT", 1, T0)]
    assert len([1 for table, _ in store_records(out) if table == "bars"]) == 1
    assert state.restored("ETHUSDT").closed == []
    assert [row[2] for row in state.restored("BTCUSDT").closed] == [T0]   # written: cleared at its next call
    trade_at(operator, state, timers, "BTCUSDT", 3, 1)
    assert state.restored("BTCUSDT").closed == []


def test_bars_a_checkpoint_held_in_the_micro_batch_are_written_after_a_restore():
    operator, state = bars_operator()
    timers = WatermarkTimers()
    trade_at(operator, state, timers, "BTCUSDT", 1, 0)
    trade_at(operator, state, timers, "BTCUSDT", 2, 1)               # the bar of second 0 waits in the batch
    checkpoint = KeyedValue()
    checkpoint.by_key = dict(state.by_key)

    restored, state = bars_operator(checkpoint)                      # the worker is gone; a new one restores
    out = trade_at(restored, state, timers, "BTCUSDT", 3, 1)
    out += list(restored.on_timer(END_OF_INPUT, EndOfInputContext("BTCUSDT")))

    assert bar_rows(out) == [("BTCUSDT", 1, T0), ("BTCUSDT", 1, T0 + 1000), ("BTCUSDT", 60, T0 - T0 % 60_000)]
    assert scored_ids(out) == [1, 2, 3]
    assert state.restored("BTCUSDT").closed == state.restored("BTCUSDT").waiting == []


def test_a_record_saved_before_bars_joined_the_micro_batch_restores_with_none_waiting():
    """Records of earlier versions pickled three fields (features, bars, waiting trades)."""
    from flink_jobs.scoring_state import SymbolRecord

    record = SymbolRecord.__new__(SymbolRecord)
    record.__setstate__((None, None, []))

    assert record.closed == [] and record.waiting == []
    assert pickle.loads(pickle.dumps(SymbolRecord(closed=[("BTCUSDT", 1)]))).closed == [("BTCUSDT", 1)]


def test_bars_alone_fill_the_micro_batch():
    """A watermark that jumps closes a symbol's bars of hours at its next trade, symbol after
    symbol: they leave once they fill the batch, not when its time is up."""
    operator, state = bars_operator()                                 # batches of 4
    timers = WatermarkTimers()
    minute = T0 - T0 % 60_000
    trade_at(operator, state, timers, "BTCUSDT", 1, 0)
    trade_at(operator, state, timers, "BTCUSDT", 2, 61)               # closes second 0 and the first minute
    out = trade_at(operator, state, timers, "BTCUSDT", 3, 200)        # second 61 and the next minute: 4 bars

    assert sorted(bar_rows(out)) == [("BTCUSDT", 1, T0), ("BTCUSDT", 1, T0 + 61_000),
                                     ("BTCUSDT", 60, minute), ("BTCUSDT", 60, minute + 60_000)]
    assert scored_ids(out) == [1, 2] and pending(operator) == [3]


class TimerContext(WatermarkContext):
    def __init__(self, key, timers, domain):
        super().__init__(key, timers)
        self.domain = domain

    def time_domain(self):
        return self.domain


def test_bars_a_sweep_closes_wait_in_the_record_until_the_flush_timer_writes_them():
    """A symbol that stops trading has its bars closed by an event-time sweep: with no trade to
    carry them they wait in the batch and in its record, and the batch's processing-time timer
    writes them and clears the record."""
    operator, state = bars_operator()                                 # batches of 4
    timers = WatermarkTimers()
    out = []
    for second in range(4):                                           # the 4th fills the batch
        out += trade_at(operator, state, timers, "BTCUSDT", second + 1, second)
    assert scored_ids(out) == [1, 2, 3, 4] and [row[2] for row in bar_rows(out)] == [T0, T0 + 1000, T0 + 2000]

    timers.at = T0 + 9_999                                            # the symbol's sweep on the 10 s grid
    out = list(operator.on_timer(T0 + 9_999, TimerContext("BTCUSDT", timers, TimeDomain.EVENT_TIME)))
    assert bar_rows(out) == []
    assert [row[2] for row in state.restored("BTCUSDT").closed] == [T0 + 3000]

    out = list(operator.on_timer(T0 + 10_000, TimerContext("BTCUSDT", timers, TimeDomain.PROCESSING_TIME)))
    assert bar_rows(out) == [("BTCUSDT", 1, T0 + 3000)] and scored_ids(out) == []
    assert state.restored("BTCUSDT").closed == [] and pending(operator) == []
