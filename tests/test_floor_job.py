"""The benchmark's floor job (bench/floor_job.py) does the job's work minus the detection: every
trade it is given reaches the store once, as the job would write it (batches cut, timed and
encoded by the scoring operator's rules), with zero features and scores. A floor that dropped or
doubled trades, or batched differently, would measure less or more than the job's own path.
(Its numbers come from `python -m bench.pipeline --floor`, never from a unit test.)"""
import pytest
from pyflink.datastream.time_domain import TimeDomain

import config as app_config
from bench import load
from bench.floor_job import FLOOR_MODEL_VERSION, ParseAndWrite, PassTrades
from flink_jobs.operators import COLUMNAR_MIN_ROWS, END_OF_INPUT
from flink_jobs.parse_batches import BLOCK_MIN_TRADES
from flink_jobs.store import open_store, payloads_table
from flink_jobs.trade_block import block_of
from flink_jobs.trades import encode_message
from producer.batching import batch_messages
from tests.test_score_batches import Timers

SYMBOLS = load.symbol_names(3)


class RecordingTimers(Timers):
    """The timers a key registered, as Flink keeps them: (key, instant) pairs per time domain."""

    def __init__(self):
        self.key = None
        self.event, self.processing = set(), []

    def register_event_time_timer(self, instant):
        self.event.add((self.key, instant))

    def register_processing_time_timer(self, instant):
        self.processing.append((self.key, instant))


class At:
    def __init__(self, key, timers, domain=TimeDomain.EVENT_TIME):
        self.key, self.timers, self.domain = key, timers, domain
        timers.key = key

    def get_current_key(self):
        return self.key

    def timer_service(self):
        return self.timers

    def time_domain(self):
        return self.domain


def market_trades(count: int) -> list:
    return list(load.bulk_trades(SYMBOLS, count, 1_700_000_000_000, per_second=50, seed=5))


def job_config(tmp_path, batch_size: int = 50):
    """The sink's and the scoring batch's sizes alike, and times long enough never to be due."""
    return app_config.load({"CHDB_PATH": str(tmp_path / "chdb"), "SINK_BATCH_SIZE": str(batch_size),
                            "SINK_FLUSH_INTERVAL_MS": "60000", "IFOREST_BATCH_SIZE": str(batch_size),
                            "IFOREST_BATCH_MS": "10000"})


def stored(cfg) -> list[dict]:
    with open_store(cfg.store) as store:
        return store.query("SELECT symbol, trade_id, price, z_price, if_score, model_version FROM trades "
                           "ORDER BY symbol, trade_id")


def calls(trades: list) -> list:
    """(symbol, payload) calls as the parser sends them: runs of a symbol's trades (the market's
    trades taken in stretches of 100, each grouped by symbol), a block when there are enough, else
    plain tuples."""
    grouped = [t for start in range(0, len(trades), 100)
               for t in sorted(trades[start:start + 100], key=lambda t: t.symbol)]
    out, run = [], []
    for trade in grouped + [None]:
        if run and (trade is None or trade.symbol != run[0].symbol or len(run) == 40):
            payload = block_of(run) if len(run) >= BLOCK_MIN_TRADES else [tuple(t) for t in run]
            out.append((run[0].symbol, payload))
            run = []
        if trade is not None:
            run.append(trade)
    return out


def pass_trades(cfg, writes: bool) -> PassTrades:
    operator = PassTrades(cfg.detection, cfg.store, sink_parallelism=1, writes=writes)
    operator.open(None)
    return operator


def pass_all(operator, trades: list, timers: RecordingTimers) -> list:
    out = []
    for symbol, payload in calls(trades):
        out += operator.process_element(payload, At(symbol, timers))
    # The end of a bounded input: Flink fires the event-time timers the keys registered.
    for key, instant in sorted(timers.event):
        out += operator.on_timer(instant, At(key, timers))
    return out


def sink_rows(out: list) -> list[dict]:
    assert {record[1][0] for record in out} == {"trades"}
    return payloads_table("trades", [record[1][1] for record in out]).to_pylist()


@pytest.mark.parametrize("writes", [True, False], ids=["writes-itself", "through-the-sink"])
def test_the_two_stage_floor_passes_every_trade_once_with_zero_features(tmp_path, writes):
    trades = market_trades(1_000)
    cfg = job_config(tmp_path)
    operator, timers = pass_trades(cfg, writes), RecordingTimers()
    try:
        out = pass_all(operator, trades, timers)
    finally:
        operator.close()

    assert {instant for _, instant in timers.event} == {END_OF_INPUT}
    rows = stored(cfg) if writes else sink_rows(out)
    if writes:
        assert out == []
    expected = sorted((t.symbol, t.trade_id, t.price) for t in trades)
    assert sorted((r["symbol"], r["trade_id"], r["price"]) for r in rows) == expected
    assert {(r["z_price"], r["if_score"], r["model_version"]) for r in rows} == {(0.0, 0.0, FLOOR_MODEL_VERSION)}


def test_the_two_stage_floor_cuts_its_batches_at_the_batch_size_as_scoring_does(tmp_path):
    operator, timers = pass_trades(job_config(tmp_path, batch_size=50), writes=False), RecordingTimers()
    out = []
    for symbol, payload in calls(market_trades(300)):
        out += operator.process_element(payload, At(symbol, timers))
    sizes = [payloads_table("trades", [record[1][1]]).num_rows for record in out]
    assert sizes == [50] * 6 and operator.pending_rows == 0


def test_the_floor_encodes_a_batch_as_scoring_does_arrow_when_large_tuples_when_small(tmp_path):
    large, small = COLUMNAR_MIN_ROWS, COLUMNAR_MIN_ROWS - 1
    for size, kind in ((large, bytes), (small, list)):
        operator, timers = pass_trades(job_config(tmp_path, batch_size=size), writes=False), RecordingTimers()
        out = []
        for symbol, payload in calls(market_trades(size)):
            out += operator.process_element(payload, At(symbol, timers))
        assert len(out) == 1 and type(out[0][1][1]) is kind


def test_a_paused_stream_s_batch_leaves_on_its_processing_time_timer(tmp_path):
    operator, timers = pass_trades(job_config(tmp_path), writes=False), RecordingTimers()
    (symbol, payload), = calls(market_trades(3)[:1])
    assert operator.process_element(payload, At(symbol, timers)) == []
    (key, instant), = timers.processing          # one timer for the batch, not one per call
    out = operator.on_timer(instant, At(key, timers, TimeDomain.PROCESSING_TIME))
    assert len(sink_rows(out)) == 1 and operator.pending == []


def test_the_one_stage_floor_parses_raw_messages_and_writes_every_trade_once(tmp_path):
    trades = market_trades(600)
    # Single-trade messages and batch messages, as the producers send them, and one that is not a trade.
    raws = [encode_message(t) for t in trades[:200]]
    for symbol in SYMBOLS:
        raws += batch_messages([t for t in trades[200:] if t.symbol == symbol], 25)
    raws.insert(10, b"not a trade")
    cfg = job_config(tmp_path, batch_size=40)
    operator = ParseAndWrite(cfg.detection, cfg.store)
    operator.open(None)
    try:
        for raw in raws:
            operator.process_element(raw, None)
    finally:
        operator.close()   # the end of the input: its last batch is written too

    rows = stored(cfg)
    assert [(r["symbol"], r["trade_id"]) for r in rows] == sorted((t.symbol, t.trade_id) for t in trades)
    assert {r["model_version"] for r in rows} == {FLOOR_MODEL_VERSION}
