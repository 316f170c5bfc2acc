"""The pipeline's floor: the streaming job's own topology with the detection taken out.

`python -m bench.pipeline --floor` submits this script (FLINK_JOB_SCRIPT) instead of
flink_jobs/anomaly_job.py, with the same arguments and settings: the Kafka source, the Arrow-batch
parser, event-time watermarks and the key by symbol in Java, one keyed Python operator, and the
trades rows written the way the job writes them (by that operator at parallelism 1, through the
store sink otherwise). What the keyed operator leaves out is everything the detection does:
features, keyed state, the z-score and ONNX scoring, bars, candidates and the cooldown. Its rows
carry zero features and scores. The difference between a floor run and a run of the job is what
the detection costs; the floor itself is what the framework, parsing and the store cost, which no
change to the detection can take away (docs/performance.md, "Eighteenth round: the floor").

A benchmark, not a product: it keeps no state, so it is not exactly-once across a failure.
"""
from __future__ import annotations

import os
import sys
import time

if __package__ in (None, ""):
    # Run as a script by `flink run -py`: make the project importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from pyflink.datastream.functions import KeyedProcessFunction, ProcessFunction, RuntimeContext  # noqa: E402
from pyflink.datastream.time_domain import TimeDomain  # noqa: E402

from config import AppConfig, DetectionConfig, StoreConfig  # noqa: E402
from flink_jobs import anomaly_job  # noqa: E402
from flink_jobs.canonical_trades import parse_batch  # noqa: E402
from flink_jobs.operators import (END_OF_INPUT, PICKLED_KEYED_TYPE, StoreSink, addressed, batch,  # noqa: E402
                                  exit_with_taskmanager, micro_batch_limits, trades_record_rows)
from flink_jobs.worker_gc import settle_after_open  # noqa: E402
from flink_jobs.scoring_batch import OUT_COLUMNS, Batch, Chunk  # noqa: E402
from flink_jobs.trade_block import from_tuples, unpack  # noqa: E402

FLOOR_MODEL_VERSION = "floor"


class PassTrades(KeyedProcessFunction):
    """A symbol's trades of one parse batch into a micro-batch of the subtask, cut, timed and
    emitted by ScoreTrades' rules (flink_jobs/operators.py): written by this operator at
    SINK_BATCH_SIZE trades or SINK_FLUSH_INTERVAL_MS when it writes the trades rows itself, else
    sent to the store sink at IFOREST_BATCH_SIZE or IFOREST_BATCH_MS, Arrow from COLUMNAR_MIN_ROWS
    rows and tuples below. What it leaves out is the detection: the features and their keyed
    state, the scoring, the bars, the candidates."""

    def __init__(self, detection: DetectionConfig, store: StoreConfig, sink_parallelism: int, writes: bool):
        self.detection = detection
        self.store_config = store
        self.sink_parallelism = sink_parallelism
        self.writes = writes

    def open(self, runtime_context: RuntimeContext):
        exit_with_taskmanager()
        self.store = None
        if self.writes:
            from flink_jobs.store import SharedStore

            self.store = SharedStore.acquire(self.store_config)
        self.batch_size, self.batch_ms = micro_batch_limits(self.detection, self.store_config if self.writes else None)
        self.pending: list = []
        self.pending_rows = 0
        self.opened_at = 0.0
        self.timer_at = None
        self.seen: set = set()
        settle_after_open()

    def close(self):
        if getattr(self, "store", None) is not None:
            self.store.release()
            self.store = None

    def process_element(self, trades, ctx: KeyedProcessFunction.Context):
        symbol = ctx.get_current_key()
        if symbol not in self.seen:
            self.seen.add(symbol)
            ctx.timer_service().register_event_time_timer(END_OF_INPUT)   # a bounded input's last batch
        columns = unpack(trades) if type(trades) is bytes else from_tuples(trades)
        chunk = Chunk(symbol, columns, np.zeros((len(columns.ids), OUT_COLUMNS)))
        out: list = []
        start, size = 0, len(chunk)
        while start < size:   # cut where the batch fills, as ScoreTrades._join_batch does
            room = max(self.batch_size - self.pending_rows, 1)
            piece = chunk if start == 0 and size <= room else chunk.rows(start, start + room)
            start += len(piece)
            self._hold(piece, ctx)
            if self.pending_rows >= self.batch_size or time.monotonic() - self.opened_at >= self.batch_ms / 1000:
                out += self._flush()
        return out

    def _hold(self, piece: Chunk, ctx: KeyedProcessFunction.Context) -> None:
        if not self.pending:
            self.opened_at = time.monotonic()
        self.pending.append(piece)
        self.pending_rows += len(piece)
        if self.timer_at is None:
            self.timer_at = ctx.timer_service().current_processing_time() + self.batch_ms
            ctx.timer_service().register_processing_time_timer(self.timer_at)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        if ctx.time_domain() == TimeDomain.PROCESSING_TIME and timestamp == self.timer_at:
            self.timer_at = None
        return self._flush()

    def _flush(self) -> list:
        if not self.pending:
            return []
        scoring = Batch(self.pending)
        self.pending, self.pending_rows = [], 0
        rows = trades_record_rows(scoring, np.zeros(scoring.rows), FLOOR_MODEL_VERSION)
        if self.store is not None:
            self.store.insert_payloads("trades", [rows])
            return []
        return [addressed(batch("trades", rows), self.sink_parallelism, scoring.chunks[0].symbol)]


class ParseAndWrite(ProcessFunction):
    """The one-stage floor (FLOOR_STAGES=1, `bench.pipeline --floor-stages 1`): raw messages,
    chained to the Kafka source, parsed and written in micro-batches by one Python operator, with
    no key, no watermark and no second Python stage: what a trade's way to the store would cost if
    parsing, keying and scoring were one hop. For the latency runs (parallelism 1): the messages
    cross into Python one record each (a DataStream function; the job's parser takes Arrow
    batches), the batch is bounded by SINK_BATCH_SIZE messages rather than trades, invalid
    messages are parsed and dropped (no dead letters), and without keyed timers a paused stream's
    batch waits for the next message or the operator's close."""

    def __init__(self, detection: DetectionConfig, store: StoreConfig):
        self.detection = detection
        self.store_config = store

    def open(self, runtime_context: RuntimeContext):
        from flink_jobs.store import SharedStore

        exit_with_taskmanager()
        self.store = SharedStore.acquire(self.store_config)
        self.raws: list = []
        self.opened_at = 0.0
        settle_after_open()

    def close(self):
        if getattr(self, "store", None) is not None:
            if self.raws:
                self._flush()   # the end of a bounded input, or a cancel: nothing is left behind
            self.store.release()
            self.store = None

    def process_element(self, raw, ctx: ProcessFunction.Context):
        if not self.raws:
            self.opened_at = time.monotonic()
        self.raws.append(raw)
        if len(self.raws) >= self.store_config.batch_size or \
                time.monotonic() - self.opened_at >= self.store_config.flush_interval_ms / 1000:
            self._flush()
        return []

    def _flush(self) -> None:
        parsed = parse_batch(self.raws, self.detection.accepts, int(time.time() * 1000))
        self.raws = []
        if not parsed.trades.size:
            return
        masks = [(name, parsed.codes == code) for code, name in enumerate(parsed.names)]
        scoring = Batch([Chunk(name, parsed.trades.take(mask), np.zeros((int(mask.sum()), OUT_COLUMNS)))
                         for name, mask in masks if mask.any()])
        self.store.insert_payloads("trades", [trades_record_rows(scoring, np.zeros(scoring.rows), FLOOR_MODEL_VERSION)])


def build_one_stage_floor(env, cfg: AppConfig) -> None:
    from pyflink.common import WatermarkStrategy

    if not anomaly_job.scoring_writes_trades(cfg):
        raise SystemExit("the one-stage floor writes from its one operator: parallelism 1 with chDB, or a server")
    (env.from_source(anomaly_job.kafka_source(cfg), WatermarkStrategy.no_watermarks(), "kafka-trades")
     .uid("source").set_parallelism(cfg.job.parallelism)
     .process(ParseAndWrite(cfg.detection, cfg.store)).name("floor-parse-and-write").set_parallelism(cfg.job.parallelism))
    anomaly_job.log.info("floor job, one stage: parse and write in one Python operator, no detection")


def build_floor_pipeline(env, cfg: AppConfig, inputs: list[str] | None = None) -> None:
    """anomaly_job.build_pipeline's topology with PassTrades in place of scoring and the cooldown."""
    from pyflink.common import WatermarkStrategy

    if inputs:
        raise SystemExit("the floor job reads Kafka only")
    if os.environ.get("FLOOR_STAGES", "2") == "1":
        return build_one_stage_floor(env, cfg)
    parallelism = cfg.job.parallelism
    raw = (env.from_source(anomaly_job.kafka_source(cfg), WatermarkStrategy.no_watermarks(), "kafka-trades")
           .uid("source").set_parallelism(parallelism))
    sink_parallelism = 1 if cfg.store.backend == "chdb" else parallelism
    parsed, dead_letters = anomaly_job.parse_in_batches(env, raw, cfg, parallelism, sink_parallelism)
    writes = anomaly_job.scoring_writes_trades(cfg)
    passed = (anomaly_job.keyed_by_symbol(parsed, anomaly_job.trade_time_watermarks(cfg.job), parallelism)
              .process(PassTrades(cfg.detection, cfg.store, sink_parallelism, writes), output_type=PICKLED_KEYED_TYPE)
              .name("floor-pass-trades"))
    (anomaly_job.keyed_by_first_field(passed.union(dead_letters))
     .process(StoreSink(cfg.store)).name(f"store-sink-{cfg.store.backend}")
     .set_parallelism(sink_parallelism))
    anomaly_job.log.info("floor job: no detection; trades rows %s",
                         "inserted by the keyed operator" if writes else "through the store sink")


if __name__ == "__main__":
    anomaly_job.exit_without_finalizers(anomaly_job.main(build=build_floor_pipeline))
