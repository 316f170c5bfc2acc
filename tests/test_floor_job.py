"""The benchmark's floor job (bench/floor_job.py) does the job's work minus the detection: every
trade it is given reaches the store once, as the job would write it, with zero features and scores.
A floor that dropped or doubled trades would measure less or more than the job's own path.
(Its numbers come from `python -m bench.pipeline --floor`, never from a unit test.)"""
import pytest

import config as app_config
from bench import load
from bench.floor_job import FLOOR_MODEL_VERSION, ParseAndWrite, PassTrades
from flink_jobs.operators import END_OF_INPUT
from flink_jobs.parse_batches import BLOCK_MIN_TRADES
from flink_jobs.store import open_store, payloads_table
from flink_jobs.trade_block import block_of
from flink_jobs.trades import encode_message
from producer.batching import batch_messages
from tests.test_score_batches import Context, EndOfInputContext

SYMBOLS = load.symbol_names(3)


def market_trades(count: int) -> list:
    return list(load.bulk_trades(SYMBOLS, count, 1_700_000_000_000, per_second=50, seed=5))


def store_config(tmp_path, batch_size: int = 50):
    return app_config.load({"CHDB_PATH": str(tmp_path / "chdb"), "SINK_BATCH_SIZE": str(batch_size),
                            "SINK_FLUSH_INTERVAL_MS": "60000"}).store


def stored(cfg) -> list[dict]:
    with open_store(cfg) as store:
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


def pass_all(operator, trades: list) -> list:
    out = []
    for symbol, payload in calls(trades):
        out += operator.process_element(payload, Context(symbol))
    for symbol in SYMBOLS:   # the end of a bounded input
        out += operator.on_timer(END_OF_INPUT, EndOfInputContext(symbol))
    return out


@pytest.mark.parametrize("writes", [True, False], ids=["writes-itself", "through-the-sink"])
def test_the_two_stage_floor_passes_every_trade_once_with_zero_features(tmp_path, writes):
    trades = market_trades(1_000)
    cfg = store_config(tmp_path)
    operator = PassTrades(cfg, sink_parallelism=1, writes=writes)
    operator.open(None)
    try:
        out = pass_all(operator, trades)
    finally:
        operator.close()

    if writes:
        assert out == []
        rows = stored(cfg)
    else:
        assert {record[1][0] for record in out} == {"trades"}
        rows = payloads_table("trades", [record[1][1] for record in out]).to_pylist()
        rows.sort(key=lambda r: (r["symbol"], r["trade_id"]))
    expected = sorted((t.symbol, t.trade_id, t.price) for t in trades)
    assert [(r["symbol"], r["trade_id"], r["price"]) for r in rows] == expected
    assert {(r["z_price"], r["if_score"], r["model_version"]) for r in rows} == {(0.0, 0.0, FLOOR_MODEL_VERSION)}


def test_the_two_stage_floor_writes_when_its_batch_is_full_not_only_at_the_end(tmp_path):
    cfg = store_config(tmp_path, batch_size=50)
    operator = PassTrades(cfg, sink_parallelism=1, writes=False)
    operator.open(None)
    out = []
    for symbol, payload in calls(market_trades(300)):
        out += operator.process_element(payload, Context(symbol))
    sizes = [payloads_table("trades", [record[1][1]]).num_rows for record in out]
    # A batch is written as soon as it holds 50 trades: never fewer, never a whole call (40) more.
    assert sizes and all(50 <= size < 90 for size in sizes)
    assert sum(sizes) + operator.pending_rows == 300


def test_the_one_stage_floor_parses_raw_messages_and_writes_every_trade_once(tmp_path):
    trades = market_trades(600)
    # Single-trade messages and batch messages, as the producers send them, and one that is not a trade.
    raws = [encode_message(t) for t in trades[:200]]
    for symbol in SYMBOLS:
        raws += batch_messages([t for t in trades[200:] if t.symbol == symbol], 25)
    raws.insert(10, b"not a trade")
    cfg = store_config(tmp_path, batch_size=40)
    operator = ParseAndWrite(cfg)
    operator.open(None)
    try:
        for raw in raws:
            operator.process_element(raw, None)
        operator._flush()   # what the next message would do once the interval has passed
    finally:
        operator.close()

    rows = stored(cfg)
    assert [(r["symbol"], r["trade_id"]) for r in rows] == sorted((t.symbol, t.trade_id) for t in trades)
    assert {r["model_version"] for r in rows} == {FLOOR_MODEL_VERSION}

