"""Flink glue: state, timers, side outputs and metrics around the plain-Python logic.

Records between operators are pickled Python objects: Row(symbol, a list of the symbol's trades
of one parse batch, each a plain tuple of the Trade's fields) after parsing, Row(symbol, a list of
Anomaly tuples) between scoring and cooldown, and ("table", [row, ...])
batches addressed to the store, where each row follows store.TABLE_COLUMNS[table], each behind
its sink key as Row(key, batch) until the store sink's key selector has read it. Rows travel
to the store in batches because every record that crosses between Java and a Python operator
has a fixed cost (docs/performance.md).
"""
from __future__ import annotations

import logging
import os
import pickle
import threading
import time
import zlib

import numpy as np
import pyarrow as pa

from pyflink.common import Row, Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor
from pyflink.datastream.time_domain import TimeDomain
from pyflink.table.udf import ScalarFunction

from config import DetectionConfig, StoreConfig
from flink_jobs.bars import OpenBars
from flink_jobs.counters import OperatorCounters
from flink_jobs.alerts.message import alert_from_anomaly
from flink_jobs.detectors.base import Anomaly
from flink_jobs.detectors.methods import (Candidate, Cooldown, ScoredBatch, candidate_rows, candidates, explain,
                                          score_matrix)
from flink_jobs.detectors.zscore import ZScoreDetector
from flink_jobs.features.symbol_state import HISTORY, SymbolState, TradeFeatures, observe_columns
from flink_jobs.scoring_batch import Batch, Chunk
from flink_jobs.scoring_state import STATE_NAME, EarlierLayout, SymbolRecord
from flink_jobs.store import arrow_stream, payload_rows, table_of
from flink_jobs.parse_batches import group_batch
from flink_jobs.trade_block import from_tuples, unpack
from flink_jobs.trades import InvalidTrade, Trade, dead_letter_raw
from flink_jobs.worker_gc import settle_after_open

log = logging.getLogger(__name__)

# Anomalies after cooldown, as alerts.message.Alert records, when alerts are on.
ALERTS = OutputTag("alerts", Types.PICKLED_BYTE_ARRAY())
# Parsing (ParseTradeBatches) leaves (Row(key, pickled payload), event time ms) in Java: the Java
# timestamp assigner reads the second field, and the Java key selector the key, so no Python
# operator sits between parsing and scoring. The scoring operator reads the payload as pickled.
KEYED_TRADE_TYPE = Types.ROW([Types.STRING(), Types.PICKLED_BYTE_ARRAY()])
PARSED_TYPE = Types.TUPLE([Types.ROW([Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())]), Types.LONG()])
# Records for a keyed Python operator other than scoring carry their key: Row(key, value), both
# pickled, read by a Java key selector from field 0 (anomaly_job.keyed_by_first_field). Store
# records leave scoring and the cooldown as Row(sink key, record), the dead letters of parsing the
# same way from Java: PyFlink's key_by runs its key selector in a Python operator of its own behind
# the union, one more hop between Python operators on every trade's path (docs/performance.md,
# eighth round). Row(key, value) with both fields pickled is what that key_by produced, so keyed
# state in savepoints of earlier versions has the same key serializer and key groups.
PICKLED_KEYED_TYPE = Types.ROW([Types.PICKLED_BYTE_ARRAY(), Types.PICKLED_BYTE_ARRAY()])
PICKLED_KEY_TYPE = Types.ROW([Types.PICKLED_BYTE_ARRAY()])
# Method candidates before cooldown, Row(symbol, packed [Candidate, ...]): a symbol's candidates of one scored
# micro-batch together. A burst of trades makes nearly every trade a candidate until the rolling rate
# catches up (the rate z-score): as a record each, those cost the worker more than the trades
# themselves (docs/performance.md, eighth round). The Java key selector in front of the cooldown
# reads the symbol from field 0, pickled as PyFlink's key_by had it, so its savepoints restore.
CANDIDATES = OutputTag("anomaly-candidates", PICKLED_KEYED_TYPE)


def pack_candidates(found: list[Candidate]) -> bytes:
    """A symbol's candidates as the CANDIDATES record carries them: plain tuples, pickled by the
    standard library, a trade's tuples shared by its methods' candidates. cloudpickle, which would
    pickle the named tuples otherwise, took 5.6 µs per candidate, this 1.0 (bench/burst.py), and a
    burst makes about two candidates per trade (docs/performance.md, "Ninth round")."""
    rows, last_trade, trade, features = [], None, None, None
    for c in found:
        if c.trade is not last_trade:
            last_trade, trade, features = c.trade, tuple(c.trade), tuple(c.features)
        rows.append((trade, features, c.method, c.if_score, c.model_version, c.novelty))
    return pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)


def unpack_candidates(blob: bytes) -> list[Candidate]:
    found, last, trade, features = [], None, None, None
    for trade_fields, feature_fields, method, if_score, model_version, novelty in pickle.loads(blob):
        if trade_fields is not last:  # the unpickler gives a shared tuple back as one object
            last, trade, features = trade_fields, Trade._make(trade_fields), TradeFeatures._make(feature_fields)
        found.append(Candidate(trade, features, method, if_score, model_version, novelty))
    return found


# Event-time timers at this instant fire only on the final watermark of a bounded input.
END_OF_INPUT = 2**63 - 1
# How long after its trade joined a scoring batch a symbol's "sweep" timer fires, at most one
# pending per symbol (ScoreTrades): it clears entries another symbol's flush emitted and scores
# entries a restore brought back, for a symbol that does not trade again.
UNSCORED_SWEEP_MS = 10_000
# Rows of one bars record at most. A symbol can close thousands of bars at once: when the watermark
# jumps (a backlog's records pass the timestamp assigner between two periodic watermarks, or the
# end of a bounded input), all its 1-second bars up to there. The store sink takes a record whole
# before it flushes, so its buffer is bounded by SINK_BATCH_SIZE plus the largest record.
MAX_BAR_ROWS_PER_RECORD = 256


def batch(table: str, rows: list) -> tuple:
    """The record the store sink takes: one table's rows, inserted together: a list of tuples in
    store.TABLE_COLUMNS order, or an Arrow stream of them (trades_payload; store.payload_rows)."""
    return table, rows


def addressed(record: tuple, sink_parallelism: int, first_column=None) -> Row:
    """A store record with its sink key in front, as the store sink's Java key selector reads it:
    the key of its first row's first column (symbol or stage), given for a columnar payload."""
    table, rows = record
    return Row(sink_key_of(rows[0][0] if first_column is None else first_column, sink_parallelism), record)


def single(record: tuple) -> tuple:
    """A ("table", row) pair as a store record of one row."""
    return batch(record[0], [record[1]])


def dead_letter(stage: str, reason: str, raw, symbol: str = "", trade_id: int = -1) -> tuple:
    """A ("dead_letters", row) pair; the raw message is kept as text, cut when it is huge."""
    raw, reason = dead_letter_raw(raw, reason)
    return "dead_letters", (stage, reason, raw, symbol, trade_id, int(time.time() * 1000))


def trade_row(trade: Trade, f: TradeFeatures, if_score: float, model_version: str) -> tuple:
    return ("trades", (trade.symbol, trade.trade_id, trade.trade_time_ms, trade.event_time_ms, trade.price,
                       trade.qty, trade.price * trade.qty, trade.is_buyer_maker, f.log_return, f.price_mean,
                       f.price_std, f.z_price, f.return_mean, f.return_std, f.z_return, if_score, model_version))


# A scoring batch of at least this many trades goes to the store sink as an Arrow stream, a smaller
# one as tuples: building the stream costs about 300 µs a batch (17 Arrow arrays, the IPC framing)
# and then 1.7 µs a row, the tuples about 4.8 µs a row in all (made, pickled at the crossings,
# converted by the sink); they cost the same at about 128 rows (docs/performance.md, "Thirteenth round").
COLUMNAR_MIN_ROWS = 128
# The features stored with each trade, in the trades table's column order (after is_buyer_maker).
STORED_FEATURES = ("log_return", "price_mean", "price_std", "z_price", "return_mean", "return_std", "z_return")
_FEATURE_INDEX = {name: i for i, name in enumerate(TradeFeatures._fields)}


def micro_batch_limits(detection: DetectionConfig, store: StoreConfig | None) -> tuple[int, int]:
    """(trades, milliseconds) of the scoring operator's micro-batch: the sink's batch when the
    operator writes the trades rows itself (one insert per batch, its trades in their symbols'
    records until it is written), else the ONNX micro-batch."""
    if store is not None:
        return store.batch_size, store.flush_interval_ms
    return detection.iforest_batch_size, detection.iforest_batch_ms


def trades_record_rows(scoring: Batch, if_scores: np.ndarray, model_version: str) -> bytes | list[tuple]:
    """A scoring batch's trades rows as a store record carries them: one Arrow stream from
    COLUMNAR_MIN_ROWS rows, tuples below."""
    if scoring.rows >= COLUMNAR_MIN_ROWS:
        return trades_payload(scoring, if_scores, model_version)
    return trade_rows(scoring, if_scores.tolist(), model_version)


def trades_payload(scoring: Batch, if_scores: np.ndarray, model_version: str) -> bytes:
    """A scoring batch's rows of the trades table (trade_row's values) as one Arrow IPC stream, built
    from its columns. The store sink inserts it as it is: converting per-row tuples there took about
    an eighth of its worker, and the tuples cost a pickling at each of their four crossings
    (docs/performance.md, "Thirteenth round")."""
    features = scoring.features
    price, qty = scoring.column("prices"), scoring.column("qtys")
    columns = [scoring.symbols(), scoring.column("ids"), scoring.column("trade_times"), scoring.column("event_times"),
               price, qty, price * qty, scoring.column("makers"),
               *(features[:, _FEATURE_INDEX[name]] for name in STORED_FEATURES),
               if_scores, pa.repeat(pa.scalar(model_version, pa.string()), scoring.rows)]
    return arrow_stream(table_of("trades", columns))


def trade_rows(scoring: Batch, if_scores: list, model_version: str) -> list[tuple]:
    """A small scoring batch's rows of the trades table as tuples: trade_row's values, without
    the named tuples."""
    stored = scoring.features[:, [_FEATURE_INDEX[name] for name in STORED_FEATURES]].tolist()
    return [(symbol, trade_id, trade_time, event_time, price, qty, price * qty, is_buyer_maker, *features, score,
             model_version)
            for (symbol, trade_id, price, qty, trade_time, event_time, is_buyer_maker), features, score
            in zip(scoring.trades(), stored, if_scores)]


def anomaly_row(a: Anomaly) -> tuple:
    t, f = a.trade, a.features
    return ("anomalies", (t.symbol, t.trade_id, t.trade_time_ms, a.method, t.price, a.score, a.threshold,
                          a.severity, a.reason, f.z_price, f.z_return, f.log_return, a.if_score, a.model_version,
                          f.robust_z_return, f.price_change_pct, f.time_gap_sec, f.vwap_deviation_pct,
                          f.volume_spike_ratio, f.price_velocity_pct_s, f.trade_rate_burst, f.buy_sell_imbalance,
                          f.volume_z, f.rate_z, a.zscore))


class _SampledLog:
    """Logs the first few events of a kind, then one in `every`, so a flood of bad input
    cannot flood the log (the metric still counts each one)."""

    def __init__(self, first: int = 10, every: int = 1000):
        self.first, self.every, self.seen = first, every, 0

    def should_log(self) -> bool:
        self.seen += 1
        return self.seen <= self.first or self.seen % self.every == 0


def _process_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a process, from /proc; None when it is gone or
    dead but not yet reaped (a zombie: a killed daemon's parent is init, which may reap it late)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def _is_java(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as handle:
            return handle.read().strip() == "java"
    except OSError:
        return False


def _java_ancestor(levels: int = 4) -> tuple[int, int] | None:
    """(pid, start time) of the nearest JVM among this process's ancestors, or None: the
    TaskManager (or MiniCluster) that launched this Python worker, through pyflink-udf-runner.sh.
    None as well when this process is itself the JVM (thread mode)."""
    pid = os.getpid()
    if _is_java(pid):
        return None
    for _ in range(levels):
        stat = _process_stat(pid)
        if stat is None or stat[0] <= 1:
            return None
        pid = stat[0]
        if _is_java(pid):
            parent = _process_stat(pid)
            return (pid, parent[1]) if parent else None
    return None


_taskmanager_watch: threading.Thread | None = None


def exit_with_taskmanager(poll_s: float = 1.0) -> None:
    """Ends this Python worker soon after its TaskManager JVM dies.

    A TaskManager killed with SIGKILL (or by the OOM killer) cannot stop its Python workers, and
    a worker that is waiting on its gRPC streams was seen to outlive it (re-parented to init),
    keeping its memory and, in the store sink, the embedded store's lock that the job restarted
    on a new TaskManager needs. One daemon thread per worker process watches the JVM found among
    its ancestors (pid and start time, so a reused pid does not count) and exits the process when
    it is gone. Nothing is watched in thread mode (the worker is the JVM) or outside Linux.
    """
    global _taskmanager_watch
    if _taskmanager_watch is not None:
        return
    jvm = _java_ancestor() if os.path.isdir("/proc") else None
    if jvm is None:
        _taskmanager_watch = threading.current_thread()  # nothing to watch; do not look again
        return

    def watch() -> None:
        while (_process_stat(jvm[0]) or (0, None))[1] == jvm[1]:
            time.sleep(poll_s)
        # Straight to stderr (the worker's boot log): Beam's log handler ships records to the dead
        # TaskManager, and flushing it at exit waits for that stream for ever.
        os.write(2, f"the TaskManager JVM (pid {jvm[0]}) that started this Python worker (pid {os.getpid()}) "
                    f"is gone: exiting\n".encode())
        os._exit(70)

    _taskmanager_watch = threading.Thread(target=watch, name="taskmanager-watch", daemon=True)
    _taskmanager_watch.start()


class FlushTimers:
    """When a buffering operator flushes: a processing-time timer `delay_ms` after the first
    buffered record (one pending at a time), and an event-time timer at END_OF_INPUT that fires
    on the final watermark of a bounded input. Timers are keyed; the flush they trigger covers
    the whole buffer of the subtask."""

    def __init__(self, delay_ms: int):
        self.delay_ms = delay_ms
        self.pending = False
        self.end_registered = False

    def arm(self, ctx: KeyedProcessFunction.Context) -> None:
        timers = ctx.timer_service()
        if not self.end_registered:
            timers.register_event_time_timer(END_OF_INPUT)
            self.end_registered = True
        if not self.pending:
            timers.register_processing_time_timer(timers.current_processing_time() + self.delay_ms)
            self.pending = True

    def fired(self, ctx: KeyedProcessFunction.OnTimerContext) -> None:
        if ctx.time_domain() == TimeDomain.PROCESSING_TIME:
            self.pending = False


class ParseTradeBatches(ScalarFunction):
    """A vectorized ("pandas") scalar function of the Table API: a batch of raw messages (bytes
    from Kafka, text from files) -> per message, a (key, pickled payload, event time) row or
    nulls: one row per symbol with its trades of the batch, one dead letter per invalid message
    (flink_jobs/parse_batches.py)."""

    def __init__(self, detection: DetectionConfig):
        self.detection = detection

    def open(self, function_context):
        exit_with_taskmanager()
        metrics = function_context.get_metric_group()
        self.parsed = metrics.counter("trades_parsed")
        self.rejected = metrics.counter("dead_letters")
        self.sampled_log = _SampledLog()
        settle_after_open()

    def eval(self, raws):
        import pandas as pd

        out = group_batch(raws, self.detection.accepts, _parse_dead_letter, self._log_rejected)
        self.parsed.inc(out.parsed)
        self.rejected.inc(out.rejected)
        return pd.DataFrame({"key": out.keys, "payload": out.payloads,
                             "event_time": pd.Series(out.event_times, dtype="int64")})

    def _log_rejected(self, error: InvalidTrade, raw) -> None:
        if self.sampled_log.should_log():
            log.warning("dead letter #%d: %s; message starts %r", self.sampled_log.seen, error, raw[:120])


def _parse_dead_letter(reason: str, raw) -> tuple:
    return single(dead_letter("parse", reason, raw))


class ScoreTrades(KeyedProcessFunction):
    """Per symbol: features from keyed state, the bars, and (per subtask) the methods in micro-batches.

    All of a symbol's state is one keyed value, its SymbolRecord (features, open bars, waiting
    trades; flink_jobs/scoring_state.py): PyFlink's costs are per state and key, not per byte.
    A call's trades are features, bars and batch entries together, as columns: one compiled call
    computes their features and updates the symbol's record, and they then wait, as one Chunk
    (flink_jobs/scoring_batch.py), in a micro-batch shared by all symbols of the subtask, scored by
    one ONNX call when it holds IFOREST_BATCH_SIZE trades (a chunk is cut there), when the
    processing-time timer IFOREST_BATCH_MS after a symbol's first trade in the batch fires, or at
    the end of a bounded input; the batch's rows leave as one ("trades", rows) record. With
    z-score alone there is no ONNX call, and the batch still gathers the rows: a record per call
    made sparse symbols slower without the model than with it (docs/performance.md, "Nineteenth
    round"). Method
    candidates (before cooldown) go to the CANDIDATES side output; a repeated trade id is a dead
    letter. Named tuples are made only for the trades a method may fire for
    (docs/performance.md, "Fifteenth round").

    A waiting trade is also in its symbol's record until its batch is emitted. A checkpoint can be
    taken while a batch waits (the Python worker sees a timer only with its next input bundle, up
    to python.fn-execution.bundle.time later): the checkpoint then
    holds the waiting trades, which a restore puts back at the head of the batch, so they are
    scored and emitted once more instead of being lost with the worker. A batch is emitted in one
    symbol's context; every other symbol of the batch clears its entries at its next trade or
    processing-time timer (its record's `waiting`): each has one pending "sweep" timer at most, UNSCORED_SWEEP_MS ahead,
    which also scores a restored entry of a symbol that does not trade again. (A timer per symbol
    and batch was about one timer per trade with 2,000 symbols; docs/performance.md.) Entries a
    checkpoint caught in between were already emitted: a restore emits them again, and the
    store's keys and the cooldown absorb the repeat (docs/reliability.md).

    Given a store (STORE_TRADES_FROM_SCORING, where the store allows several writers or the job
    runs at parallelism 1; flink_jobs/anomaly_job.py), the operator inserts its trades (and bars) rows itself
    instead of sending them to the store sink, one Python stage less on a trade's way to the store
    (docs/performance.md, "Seventeenth round"). The micro-batch is then the sink's: it is scored
    and written when it holds SINK_BATCH_SIZE trades or its first trade has waited
    SINK_FLUSH_INTERVAL_MS, and its trades stay in their symbols' records until then, so the
    guarantee above covers the write as well: a checkpoint taken before the insert holds the
    trades, one taken after it does not need them. Candidates leave with the same flush.

    With `bars`, the same operator keeps the symbol's 1-second and 1-minute OHLCV bars (one
    operator rather than a second keyed stage: every trade crossing into another Python operator
    costs more than the bar update itself; docs/performance.md). A trade joins the open bar of
    each interval. A bar is closed once the watermark has passed its window: at the symbol's next
    trade, or at the latest when a sweep timer on the bars.SWEEP_MS event-time grid fires
    (bars.OpenBars). Its row then joins the micro-batch and waits in the symbol's record as a
    trade does (`closed`), and leaves with the batch (written by the operator where it writes the
    trades rows). The final watermark of a bounded input fires every remaining timer, so
    the last windows are flushed at the end of input. A trade behind the watermark for a window
    that has closed is late: it still joins the bars that are open (its minute, often), is
    counted in `late_trades`, and becomes a dead letter (stage "bars") naming the bars it missed.
    Its row in `trades` is written as usual, so the bar can be recomputed from there
    (sql/queries/bars_from_trades.sql).
    """

    def __init__(self, detection: DetectionConfig, bars: bool = True, sink_parallelism: int = 1,
                 store: StoreConfig | None = None):
        self.detection = detection
        self.bars = bars
        self.sink_parallelism = sink_parallelism
        self.store_config = store   # given: the operator writes its trades rows to the store itself

    def open(self, runtime_context: RuntimeContext):
        exit_with_taskmanager()
        self.runtime_context = runtime_context
        self.store = None
        if self.store_config is not None:
            from flink_jobs.store import SharedStore

            self.store = SharedStore.acquire(self.store_config)
        self.records = runtime_context.get_state(ValueStateDescriptor(STATE_NAME, Types.PICKLED_BYTE_ARRAY()))
        self.earlier_layout = None  # registered when a savepoint of an earlier version shows (scoring_state.py)
        self.zscore = ZScoreDetector(self.detection)
        self.models = None
        if self.detection.needs_model:
            from models.registry import ModelWatcher

            self.models = ModelWatcher(self.detection.model_registry, self.detection.model_version,
                                       self.detection.model_poll_seconds)
        self.batch_size, self.batch_ms = micro_batch_limits(self.detection, self.store_config)
        self.pending: list = []        # the batch: Chunks of its symbols' trades, in arrival order
        self.pending_rows = 0          # trades in them
        self.pending_bars: list = []   # rows of the bars its symbols closed meanwhile
        self.batch_opened_at = 0.0     # time.monotonic() when the batch got its first trade
        self.in_batch: set = set()     # symbols with trades in the batch
        self.emitted: set = set()      # symbols whose `unscored` entries another symbol's flush emitted
        self.seen: set = set()         # symbols whose `unscored` state this process has taken over
        self.flush_timer_at = None     # the pending timer that flushes the batch, if any
        self.sweep_at: dict = {}       # symbol -> its pending sweep timer (processing time)
        # Counts made in processing-time timers (the batch's flush) reach Flink only this way.
        self.counters = counters = OperatorCounters(runtime_context.get_metrics_group())
        self.repeats = counters.counter("repeated_trades")
        self.batches = counters.counter("scoring_batches")
        self.restored = counters.counter("restored_unscored_trades")
        self.upgraded = counters.counter("symbols_upgraded_from_earlier_state")
        self.late = counters.counter("late_trades")
        self.bars_emitted = counters.counter("bars_emitted")
        self.rows_written = counters.counter("rows_written")
        self.sampled_log = _SampledLog()
        settle_after_open()

    def close(self):
        if getattr(self, "store", None) is not None:
            self.store.release()
            self.store = None

    def process_element(self, trades, ctx: KeyedProcessFunction.Context):
        """A symbol's trades of one parse batch: a trade block, or a few as a list of plain tuples
        (flink_jobs/parse_batches.py)."""
        self.counters.in_scope()
        symbol = ctx.get_current_key()
        record, _ = self._record(symbol, ctx)
        out: list = []
        if record.features is None:
            record.features = SymbolState(self.detection.window_size)
        # The features of all of them in one compiled call: each trade's depend on the symbol's
        # earlier trades alone, not on the bars or the batch that the steps below handle.
        if type(trades) is bytes:
            columns, trades = unpack(trades), None
        else:
            columns = from_tuples(trades)
        features, status = observe_columns(record.features, columns.ids, columns.prices, columns.qtys,
                                           columns.trade_times, columns.makers)
        chunk = Chunk(symbol, columns, features, trades)
        if np.count_nonzero(status):
            chunk = self._drop_repeats(chunk, status, out)
        if len(chunk):
            if self.bars:
                self._add_to_bars(chunk, record, ctx.timer_service().current_watermark(), ctx, out)
                self._flush_if_bars_fill(record, out)
            self._join_batch(chunk, record, ctx, out)
        # A flush above marked this symbol's waiting trades as emitted; those after it wait in
        # `record.waiting`, which is right as it is: nothing may clear it on the next call.
        self.emitted.discard(symbol)
        self.records.update(record)
        return out

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        record, changed = self._record(ctx.get_current_key(), ctx)
        out: list = []
        if ctx.time_domain() == TimeDomain.EVENT_TIME and self.bars and record.bars is not None:
            self._close_bars(timestamp, record, ctx)
            self._flush_if_bars_fill(record, out)
            changed = True
        if ctx.time_domain() == TimeDomain.PROCESSING_TIME and self.flush_timer_at is not None \
                and timestamp >= self.flush_timer_at:
            self.flush_timer_at = None
        if ctx.time_domain() == TimeDomain.PROCESSING_TIME or timestamp == END_OF_INPUT:
            had_waiting = record.holds_batch()
            self._flush(record, out)
            changed = changed or (had_waiting and not record.holds_batch())
        if changed:
            self.records.update(record)
        return out

    def _drop_repeats(self, chunk: Chunk, status: np.ndarray, out: list) -> Chunk:
        """The chunk without its repeated trades, each a dead letter."""
        repeated = np.flatnonzero(status)
        self.repeats.inc(len(repeated))
        for row in repeated.tolist():
            trade = tuple(chunk.trade(row))   # one tuple: a block's others are never made
            last_seen = int(chunk.features[row, HISTORY])
            reason = f"repeated or out-of-order trade id: {trade[1]} (last seen {last_seen})"
            out.append(addressed(single(dead_letter("detect", reason, repr(tuple(trade)), trade[0], trade[1])),
                                 self.sink_parallelism))
        return chunk.keep(status == 0)

    def _join_batch(self, chunk: Chunk, record: SymbolRecord, ctx: KeyedProcessFunction.Context,
                    out: list) -> None:
        """The chunk into the micro-batch, cut where the batch fills; what a flush emits goes to `out`."""
        start, size = 0, len(chunk)
        while start < size:
            # A restore can leave the batch fuller than its size (_record): then one trade fills it.
            room = max(self.batch_size - self.pending_rows, 1)
            piece = chunk if start == 0 and size <= room else chunk.rows(start, start + room)
            start += len(piece)
            record.waiting.append(piece)
            self._hold(piece.symbol, [piece], ctx, len(piece))
            # Full, or due: a busy stream flushes here, without waiting for the timer's round trip
            # through the Java operator (a bundle each way); the timer covers a stream that pauses.
            if self.pending_rows >= self.batch_size or time.monotonic() - self.batch_opened_at >= self.batch_ms / 1000:
                self._flush(record, out)

    def _record(self, symbol: str, ctx) -> tuple[SymbolRecord, bool]:
        """The symbol's record, brought in line with this process's batch before anything else
        happens in its context, and whether that changed it: waiting trades a restore brought back
        join the batch, ahead of newer trades; waiting trades another symbol's flush emitted are
        dropped from it."""
        record, changed = self.records.value() or SymbolRecord(), False
        if isinstance(record, SymbolState):
            record, changed = self._from_earlier_layout(symbol, record), True
        if record.waiting and type(record.waiting[0]) is not Chunk:
            record.waiting, changed = [Chunk.from_pairs(symbol, record.waiting)], True   # (trade, features) pairs
        if symbol not in self.seen:
            self.seen.add(symbol)
            ctx.timer_service().register_event_time_timer(END_OF_INPUT)
            if record.holds_batch():
                restored = sum(len(chunk) for chunk in record.waiting)
                self.restored.inc(restored)
                log.info("%s: %d trades and %d bars held in the micro-batch when the checkpoint was taken "
                         "join the batch again", symbol, restored, len(record.closed))
                self._hold(symbol, list(record.waiting), ctx, restored)
                self.pending_bars.extend(record.closed)
        elif symbol in self.emitted:
            record.forget_batch()
            changed = True
        self.emitted.discard(symbol)
        return record, changed

    def _from_earlier_layout(self, symbol: str, features: SymbolState) -> SymbolRecord:
        if self.earlier_layout is None:
            self.earlier_layout = EarlierLayout(self.runtime_context)
            log.info("keyed state of an earlier version (four states per symbol): taken over symbol by symbol")
        record = self.earlier_layout.take(features)
        self.upgraded.inc()
        log.debug("%s: state of an earlier version taken over, %d trades waiting", symbol, len(record.waiting))
        if record.waiting:
            record.waiting = [Chunk.from_pairs(symbol, record.waiting)]
        return record

    @property
    def batch_empty(self) -> bool:
        """No trades and no bars' rows wait in the micro-batch."""
        return not self.pending and not self.pending_bars

    def _hold(self, symbol: str, chunks: list, ctx, rows: int) -> None:
        """The symbol's chunks (`rows` trades) join the batch."""
        if self.batch_empty:
            self.batch_opened_at = time.monotonic()
        self.pending.extend(chunks)
        self.pending_rows += rows
        if symbol in self.in_batch:
            return
        self.in_batch.add(symbol)
        timers = ctx.timer_service()
        now = timers.current_processing_time()
        if self.flush_timer_at is None:
            self.flush_timer_at = now + self.batch_ms
            timers.register_processing_time_timer(self.flush_timer_at)
        elif self.sweep_at.get(symbol, -1) <= now:   # one due now may have fired already
            self.sweep_at[symbol] = now + UNSCORED_SWEEP_MS
            timers.register_processing_time_timer(self.sweep_at[symbol])

    def _flush(self, record: SymbolRecord, out: list) -> None:
        """Scores the batch and appends its records to `out`; called in the context of a symbol of
        the batch (or of one whose entries are all emitted), whose waiting trades and bars it
        clears from `record`."""
        if self.batch_empty:
            return
        chunks, bar_rows = self.pending, self.pending_bars
        self.pending, self.pending_rows, self.pending_bars = [], 0, []
        record.forget_batch()
        self.emitted |= self.in_batch
        self.in_batch = set()
        if chunks:
            self._score(Batch(chunks), out)
        if bar_rows:
            self._write_bars(bar_rows, out)

    def _score(self, scoring: Batch, out: list) -> None:
        """The batch's trades scored: their candidates and trades rows."""
        model = self.models.current() if self.models is not None else None
        scored = score_matrix(model, scoring.model_input())
        if model is not None:
            self.batches.inc()
        self._emit_candidates(scoring, scored, out)
        rows = trades_record_rows(scoring, scored.scores, scored.version)
        if self.store is not None:
            # Before the symbols' records forget these trades (they are written when this call
            # returns): a failure in between replays them, and the store's keys absorb the repeat.
            self.rows_written.inc(self.store.insert_payloads("trades", [rows]))
        else:
            out.append(addressed(batch("trades", rows), self.sink_parallelism, scoring.chunks[0].symbol))

    def _emit_candidates(self, scoring: Batch, scored: ScoredBatch, out: list) -> None:
        """The methods' candidates of the batch, one CANDIDATES record per symbol in trade order.
        Named tuples are made only for the rows where a method may fire (a few in a thousand)."""
        thresholds = scoring.per_row([self.zscore.threshold(chunk.symbol) for chunk in scoring.chunks])
        by_symbol: dict = {}
        for row in candidate_rows(self.detection, scoring.features, thresholds, scored.labels).tolist():
            chunk, at = scoring.locate(row)
            found = candidates(self.detection, self.zscore, chunk.trade(at), chunk.trade_features(at),
                               float(scored.scores[row]), int(scored.labels[row]), scored)
            if found:
                by_symbol.setdefault(chunk.symbol, []).extend(found)
        for symbol, symbol_candidates in by_symbol.items():
            out.append((CANDIDATES, Row(symbol, pack_candidates(symbol_candidates))))

    def _add_to_bars(self, chunk: Chunk, record: SymbolRecord, watermark: int,
                     ctx: KeyedProcessFunction.Context, out: list) -> None:
        if record.bars is None:
            record.bars = OpenBars()
        bars, symbol = record.bars, chunk.symbol
        closed = bars.close_until(watermark, symbol)  # a trading symbol's bars close as it trades
        timers, late = bars.add_all(chunk, watermark)
        for instant in timers:
            ctx.timer_service().register_event_time_timer(instant)
        if closed:
            self._hold_bars(symbol, record, closed, ctx)
        for row, missed in late.items():
            self.late.inc()
            trade = tuple(chunk.trade(row))
            # No watermark in the reason: dead letters are keyed by their reason, and a replay of
            # the same trade must collapse onto the first one.
            reason = (f"late for bar window: trade time {trade[4]} is behind the watermark; "
                      f"missing from its {' and '.join(f'{s} s' for s in missed)} bar")
            if self.sampled_log.should_log():
                log.warning("%s trade %d %s (watermark %d)", symbol, trade[1], reason, watermark)
            out.append(addressed(single(dead_letter("bars", reason, repr(tuple(trade)), symbol, trade[1])),
                                 self.sink_parallelism))

    def _close_bars(self, timestamp: int, record: SymbolRecord, ctx: KeyedProcessFunction.OnTimerContext) -> None:
        """A sweep timer (or the end of input) closes every bar the watermark has passed."""
        record.bars.swept(timestamp)
        symbol = ctx.get_current_key()
        rows = record.bars.close_until(max(timestamp, ctx.timer_service().current_watermark()), symbol)
        if rows:
            self._hold_bars(symbol, record, rows, ctx)

    def _hold_bars(self, symbol: str, record: SymbolRecord, rows: list, ctx) -> None:
        """Closed bars' rows join the micro-batch and leave with its trades, in one store record
        for all its symbols, rather than a record per call: a sparse symbol closes a 1-second bar
        at nearly every trade. They also wait in the symbol's record, as its trades do, so a
        checkpoint taken meanwhile holds them."""
        self._hold(symbol, [], ctx, 0)
        record.closed.extend(rows)
        self.pending_bars.extend(rows)

    def _flush_if_bars_fill(self, record: SymbolRecord, out: list) -> None:
        """The batch flushed when its bars alone fill it: a watermark that jumps (a backlog, the
        end of a bounded input) closes a symbol's bars of hours at once, for symbol after symbol."""
        if len(self.pending_bars) >= self.batch_size:
            self._flush(record, out)

    def _write_bars(self, rows: list, out: list) -> None:
        """The batch's bar rows: inserted where the operator writes its trades rows itself, else
        to the store sink in records of at most MAX_BAR_ROWS_PER_RECORD rows."""
        self.bars_emitted.inc(len(rows))
        if self.store is not None:
            self.rows_written.inc(self.store.insert_payloads("bars", [rows]))
            return
        for start in range(0, len(rows), MAX_BAR_ROWS_PER_RECORD):
            out.append(addressed(batch("bars", rows[start:start + MAX_BAR_ROWS_PER_RECORD]), self.sink_parallelism))


class ApplyCooldown(KeyedProcessFunction):
    """Per symbol and method: lets an anomaly through unless the same method raised one for the
    symbol less than COOLDOWN_SECONDS of event time before. Only candidates reach this operator,
    a symbol's candidates of one scoring batch in one record, in trade order; those let through
    become anomalies (their reasons written here, not for those dropped) and leave as one store
    record. With `alerts`, each also goes to the ALERTS side output."""

    def __init__(self, detection: DetectionConfig, alerts: bool = False, sink_parallelism: int = 1):
        self.detection = detection
        self.alerts = alerts
        self.sink_parallelism = sink_parallelism

    def open(self, runtime_context: RuntimeContext):
        exit_with_taskmanager()
        self.last_by_method = runtime_context.get_state(
            ValueStateDescriptor("last_anomaly_ms", Types.PICKLED_BYTE_ARRAY()))
        self.cooldown = Cooldown(self.detection.cooldown_seconds)
        self.zscore = ZScoreDetector(self.detection)  # thresholds, for the reasons of those let through
        self.raised = runtime_context.get_metrics_group().counter("anomalies")
        settle_after_open()

    def process_element(self, packed: bytes, ctx: KeyedProcessFunction.Context):
        last = self.last_by_method.value() or {}
        passed = [explain(c, self.zscore) for c in unpack_candidates(packed)
                  if self.cooldown.allow(last, c.method, c.trade.trade_time_ms)]
        if not passed:
            return []
        self.last_by_method.update(last)
        self.raised.inc(len(passed))
        for anomaly in passed:
            # High-severity anomalies are logged; the store and the `anomalies` metric have them all.
            log.log(logging.INFO if anomaly.severity == "high" else logging.DEBUG, "anomaly %s %s trade %d: %s",
                    anomaly.method, anomaly.trade.symbol, anomaly.trade.trade_id, anomaly.reason)
        out = [addressed(batch("anomalies", [anomaly_row(a)[1] for a in passed]), self.sink_parallelism)]
        if self.alerts:
            out.extend((ALERTS, alert_from_anomaly(a)) for a in passed)
        return out


def sink_key_of(first_column, parallelism: int) -> int:
    """Spreads store batches over the sink subtasks by their first row's first column (symbol or stage)."""
    return 0 if parallelism == 1 else zlib.crc32(str(first_column).encode()) % parallelism


def pickled_sink_key(first_column, parallelism: int) -> bytes:
    """The sink key as a Python operator's output carries it in a pickled field (PyFlink encodes
    those with cloudpickle), for records put together in Java: the same key must be the same bytes
    there, or the sink's state would hold it twice."""
    import cloudpickle

    return cloudpickle.dumps(sink_key_of(first_column, parallelism))


class StoreSink(KeyedProcessFunction):
    """Buffers ("table", rows) records and inserts them per table in batches: when the buffer
    holds SINK_BATCH_SIZE rows, when a processing-time timer SINK_FLUSH_INTERVAL_MS after the
    first buffered row fires, and when the end-of-input watermark arrives (bounded runs).

    The buffer is Flink keyed list state, so it is part of every checkpoint: rows that had not
    reached the store when a task failed are restored with the checkpoint and written then; rows
    after the checkpoint come again from Kafka. Writes are idempotent (ReplacingMergeTree keys),
    so a row written twice this way still counts once.
    """

    def __init__(self, store: StoreConfig):
        self.store_config = store

    def open(self, runtime_context: RuntimeContext):
        exit_with_taskmanager()
        from flink_jobs.store import SharedStore

        self.store = SharedStore.acquire(self.store_config)
        self.buffer = runtime_context.get_list_state(
            ListStateDescriptor("store_buffer", Types.PICKLED_BYTE_ARRAY()))
        self.buffered = 0  # rows added since the last flush by this process (a restored buffer is
        # flushed by its restored timer)
        self.first_buffered_at = 0.0  # time.monotonic() of the first of them
        self.peak_buffered = 0  # the most rows buffered at once since the subtask started
        self.timers = FlushTimers(self.store_config.flush_interval_ms)
        metrics = runtime_context.get_metrics_group()
        self.counters = counters = OperatorCounters(metrics)   # counting in flush timers too
        self.rows_written = counters.counter("rows_written")
        self.batches_written = counters.counter("batches_written")
        # Fewer than SINK_BATCH_SIZE rows plus one record (a scoring batch of up to IFOREST_BATCH_SIZE
        # trade rows, or up to MAX_BAR_ROWS_PER_RECORD bars): a full buffer is inserted before the next
        # record is taken, so a slow store slows the job down (back-pressure) instead of growing it.
        metrics.gauge("buffered_rows", lambda: self.buffered)
        # Gauges are read when a bundle ends, often just after a flush: the peak shows the bound.
        metrics.gauge("buffered_rows_peak", lambda: self.peak_buffered)
        settle_after_open()

    def process_element(self, record, ctx: KeyedProcessFunction.Context):
        self.counters.in_scope()
        self.buffer.add(record)
        if not self.buffered:
            self.first_buffered_at = time.monotonic()
        self.buffered += payload_rows(record[1])
        self.peak_buffered = max(self.peak_buffered, self.buffered)
        # Full, or due (as in ScoreTrades: a busy stream does not wait for the timer's round trip).
        if self.buffered >= self.store_config.batch_size or \
                time.monotonic() - self.first_buffered_at >= self.store_config.flush_interval_ms / 1000:
            self._flush()
        else:
            self.timers.arm(ctx)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        self.timers.fired(ctx)
        self._flush()
        yield from ()  # PyFlink iterates what on_timer returns; the sink emits nothing

    def close(self):
        if getattr(self, "store", None) is not None:
            self.store.release()
            self.store = None

    def _flush(self):
        by_table: dict[str, list] = {}
        for table, payload in self.buffer.get() or ():
            by_table.setdefault(table, []).append(payload)
        for table, payloads in by_table.items():
            self.rows_written.inc(self.store.insert_payloads(table, payloads))
            self.batches_written.inc()
        self.buffer.clear()
        self.buffered = 0
