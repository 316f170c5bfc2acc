"""The scoring operator with a real Isolation Forest, fed the way Flink feeds it, against the offline
reference (flink_jobs/detectors/offline.py) and against bars built one trade at a time.

Real trades (the bundled ETHUSDT and XRPETH files), a forest trained on them in-process and run by
onnxruntime, two symbols interleaved in calls of very different sizes (a sparse symbol's one trade
up to a busy parse batch's thousand), a watermark that trails the trades, a repeated trade and one
that is late for its bar. Whatever the operator does to be fast (columns, micro-batches of several
symbols, one flush for many calls), its rows must be the reference's: every trade row with its
features and score, every method candidate, every bar, every dead letter."""
import pytest

import config as app_config
from flink_jobs.bars import OpenBars
from flink_jobs.detectors.offline import detect
from flink_jobs.operators import END_OF_INPUT, ApplyCooldown, ScoreTrades, anomaly_row, pack_candidates, trade_row
from flink_jobs.store import TABLE_COLUMNS, open_store, payloads_table
from flink_jobs.parse_batches import BLOCK_MIN_TRADES
from flink_jobs.trade_block import block_of
from flink_jobs.detectors.iforest import OnnxIsolationForest
from flink_jobs.features.symbol_state import FEATURE_NAMES, FEATURE_SET_VERSION
from models.dataset import feature_matrix, trades_from_files
from models.registry import publish
from models.train import feature_ranges, fit, thresholds, to_onnx_bytes
from tests.conftest import sample_path
from tests.store_data import shifted
from tests.test_score_batches import (Context, EndOfInputContext, KeyedValue, RuntimeContext, WatermarkContext,
                                      WatermarkTimers, candidate_records, store_records)

# Call sizes in turn: a parse batch holds anything from one trade of a symbol to thousands.
CALL_SIZES = (1, 3, 400, 7, 1, 200, 64, 2, 129)
WATERMARK_LAG_MS = 2_000


def calls_of(by_symbol: dict) -> list:
    """(symbol, trades) calls: each symbol's trades cut in CALL_SIZES in turn, the calls of all
    symbols in the order of their first trade's time (as a source reads them)."""
    calls = []
    for symbol, trades in by_symbol.items():
        start, turn = 0, 0
        while start < len(trades):
            size = CALL_SIZES[turn % len(CALL_SIZES)]
            calls.append((symbol, trades[start:start + size]))
            start, turn = start + size, turn + 1
    return sorted(calls, key=lambda call: call[1][0].trade_time_ms)


def squeezed(trades: list, onto: list) -> list:
    first, span = trades[0].trade_time_ms, trades[-1].trade_time_ms - trades[0].trade_time_ms
    target_first, target_span = onto[0].trade_time_ms, onto[-1].trade_time_ms - onto[0].trade_time_ms
    times = [target_first + (t.trade_time_ms - first) * target_span // span for t in trades]
    return [t._replace(trade_time_ms=ms, event_time_ms=ms) for t, ms in zip(trades, times)]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    by_symbol = {"ETHUSDT": list(trades_from_files([sample_path("ETHUSDT-trades-2023-02-02.csv")], "ETHUSDT")),
                 "XRPETH": list(trades_from_files([sample_path("XRPETH-trades-2019-10-11.csv")], "XRPETH"))}
    # One watermark serves both, as in a live subtask: XRPETH's 17 hours are squeezed into ETHUSDT's
    # 3.5 minutes (its first 2,000 trades), both ending at the same instant.
    by_symbol["XRPETH"] = squeezed(by_symbol["XRPETH"][:2000], by_symbol["ETHUSDT"])
    by_symbol = {symbol: shifted(trades, 1_700_000_000_000) for symbol, trades in by_symbol.items()}
    # A trade sent twice (a producer retry): the second is a dead letter and scores nothing.
    eth = by_symbol["ETHUSDT"]
    eth.insert(500, eth[499])
    # A trade that reaches the job 5 s after its time: its second's bar has closed (a dead letter
    # names it), its minute's has not.
    eth[810] = eth[810]._replace(trade_time_ms=eth[810].trade_time_ms - 5_000)
    registry = str(tmp_path_factory.mktemp("models"))
    cfg = app_config.load({"SYMBOLS": "ETHUSDT,XRPETH", "MIN_HISTORY": "20", "MODEL_REGISTRY": registry},
                          detection={"cooldown_seconds": 0, "iforest_batch_size": 300, "iforest_batch_ms": 10_000})
    published = publish_model(registry, by_symbol["XRPETH"][:1000] + eth[:500], cfg.detection)
    return by_symbol, cfg.detection, OnnxIsolationForest.from_registry(published)


def publish_model(registry: str, trades: list, detection):
    """A forest trained on the trades, in the registry as models.train leaves one."""
    matrix, _, _ = feature_matrix(trades, detection.window_size, detection.min_history)
    forest = fit(matrix, contamination=0.01, n_estimators=50, seed=3)
    return publish(registry, to_onnx_bytes(forest, matrix.shape[1]),
                   {"feature_names": list(FEATURE_NAMES), "feature_set_version": FEATURE_SET_VERSION,
                    "feature_ranges": feature_ranges(matrix), "thresholds": thresholds(forest, matrix)})


def run_operator(by_symbol: dict, detection, store=None) -> list:
    state, timers = KeyedValue(), WatermarkTimers()
    operator = ScoreTrades(detection, bars=True, store=store)
    operator.open(RuntimeContext(state))
    out = []
    try:
        for symbol, trades in calls_of(by_symbol):
            state.key = symbol
            timers.at = max(timers.at, trades[0].trade_time_ms - WATERMARK_LAG_MS)
            # As the parser sends them: a block, or a few trades as plain tuples
            payload = block_of(trades) if len(trades) >= BLOCK_MIN_TRADES else [tuple(t) for t in trades]
            out += operator.process_element(payload, WatermarkContext(symbol, timers))
        for symbol in by_symbol:   # the end of input: every symbol's timers fire with the final watermark
            state.key = symbol
            timers.at = END_OF_INPUT
            out += operator.on_timer(END_OF_INPUT, EndOfInputContext(symbol))
    finally:
        operator.close()
    return out


def written_rows(store_config, table: str) -> list:
    """A table as the operator inserted it (every insert, no merge in between)."""
    names = ", ".join(f"`{name}`" for name, _ in TABLE_COLUMNS[table])
    with open_store(store_config) as store:
        return store.query_arrow(f"SELECT {names} FROM {table}").to_pylist()


def reference_bars(by_symbol: dict) -> tuple[list, list]:
    """Bars and late trades (symbol, trade id, intervals missed), one trade at a time, with the
    operator's watermark: the definition in flink_jobs/bars.py applied directly."""
    rows, late, watermark = [], [], -(2**63)
    bars = {symbol: OpenBars() for symbol in by_symbol}
    seen = {symbol: -1 for symbol in by_symbol}
    for symbol, trades in calls_of(by_symbol):
        watermark = max(watermark, trades[0].trade_time_ms - WATERMARK_LAG_MS)
        for trade in trades:
            if trade.trade_id <= seen[symbol]:
                continue   # a repeat is a dead letter before it reaches the bars
            seen[symbol] = trade.trade_id
            rows += bars[symbol].close_until(watermark, symbol)
            _, missed = bars[symbol].add(trade, watermark)
            if missed:
                late.append((symbol, trade.trade_id, tuple(missed)))
    for symbol, open_bars in bars.items():
        rows += open_bars.close_until(END_OF_INPUT, symbol)
    return rows, late


def table_rows(out, table) -> list:
    return [row for name, rows in store_records(out) if name == table
            for row in payloads_table(name, [rows]).to_pylist()]


@pytest.mark.parametrize("writes_trades", [False, True], ids=["through-the-sink", "written-by-scoring"])
def test_the_operator_stores_what_the_offline_reference_and_the_bar_definition_say(market, writes_trades, tmp_path):
    by_symbol, detection, model = market
    # Each symbol's features depend on its own trades alone, in their order, and the forest scores
    # a row the same in any batch: the reference may take the symbols one after the other.
    everything = [t for trades in by_symbol.values() for t in trades]
    scored, anomalies = detect(everything, detection, model)
    # Written by scoring: the sink's batch (300 rows, as the model's above) and a wait no call reaches.
    store = app_config.load({"CHDB_PATH": str(tmp_path / "chdb"), "SINK_BATCH_SIZE": "300",
                             "SINK_FLUSH_INTERVAL_MS": "600000"}).store if writes_trades else None

    out = run_operator(by_symbol, detection, store)

    expected = payloads_table("trades", [[trade_row(t, f, s, model.version)[1] for t, f, s in scored]]).to_pylist()
    stored = written_rows(store, "trades") if writes_trades else table_rows(out, "trades")
    assert not writes_trades or table_rows(out, "trades") == table_rows(out, "bars") == []
    key = lambda row: (row["symbol"], row["trade_id"])
    assert len(stored) == len(expected) == sum(len(t) for t in by_symbol.values()) - 1
    assert sorted(map(repr, sorted(stored, key=key))) == sorted(map(repr, sorted(expected, key=key)))

    # Candidates with cooldown 0 are the anomalies: the same ones, each symbol's in trade order.
    cooldown, cooldown_state, rows = ApplyCooldown(detection), KeyedValue(), []
    cooldown.open(RuntimeContext(cooldown_state))
    for symbol, found in candidate_records(out):
        cooldown_state.key = symbol
        for _, anomaly_rows in store_records(cooldown.process_element(pack_candidates(found), Context(symbol))):
            rows += anomaly_rows
    assert len(anomalies) >= 20 and {a.method for a in anomalies} == {"zscore", "iforest", "combined"}
    assert sorted(map(repr, rows)) == sorted(repr(anomaly_row(a)[1]) for a in anomalies)

    bars, late = reference_bars(by_symbol)
    assert len(bars) > 100
    stored_bars = written_rows(store, "bars") if writes_trades else table_rows(out, "bars")
    assert sorted(map(repr, stored_bars)) == sorted(map(repr, payloads_table("bars", [bars]).to_pylist()))

    assert ("ETHUSDT", by_symbol["ETHUSDT"][810].trade_id, (1,)) in late
    dead = table_rows(out, "dead_letters")
    assert [(d["stage"], d["symbol"], d["trade_id"]) for d in dead if d["stage"] == "detect"] == \
        [("detect", "ETHUSDT", by_symbol["ETHUSDT"][500].trade_id)]
    assert sorted((d["symbol"], d["trade_id"]) for d in dead if d["stage"] == "bars") == \
        sorted((symbol, trade_id) for symbol, trade_id, _ in late)

