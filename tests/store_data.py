"""A chDB store filled the way a run of the job fills it, for the dashboard and report tests.

Nothing is hand-typed: the trades are the REAL bundled ETHUSDT and XRPETH trades, scored by the
job's own detection code (flink_jobs/detectors/offline.py, which the end-to-end tests prove equal
to the Flink job) with two Isolation Forests trained here in-process, written with the job's own
row builders; the dead letters are the job's parser rejecting REAL recorded Binance frames; the
bars are computed by ClickHouse from the stored trades, as the job will compute them.

The trades are replayed "as if live": each symbol's times are moved by one offset so its last
trade happened LAST_TRADE_AGE_MS before the fill, so dashboards over "the last N hours" see them
and latency and freshness are those of a live feed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from config import load
from flink_jobs.detectors.iforest import OnnxIsolationForest
from flink_jobs.detectors.offline import detect
from flink_jobs.operators import anomaly_row, dead_letter, trade_row
from flink_jobs.trades import InvalidTrade, Trade, parse_trade
from models.dataset import feature_matrix, trades_from_files
from models.train import feature_ranges, fit, thresholds, to_onnx_bytes

from tests.conftest import PROJECT_DIR, sample_path

LAST_TRADE_AGE_MS = 60_000
SYMBOLS = "ETHUSDT,XRPETH"
RECORDED_FRAMES = os.path.join(PROJECT_DIR, "tests", "fixtures", "binance-ws-combined-stream.txt")
# Which model scores which symbol: two versions in use, as after a hot swap.
MODEL_FOR = {"XRPETH": "20260101T000000Z", "ETHUSDT": "20260102T000000Z"}

BARS_FROM_TRADES = """
INSERT INTO bars (symbol, interval_s, window_start, open, high, low, close, volume, quote_volume, vwap,
                  trade_count, buy_volume, sell_volume)
SELECT
    symbol,
    {interval_s:UInt32},
    toStartOfInterval(trade_time, toIntervalSecond({interval_s:UInt32})) AS window_start,
    argMin(price, (trade_time, trade_id)),
    max(price),
    min(price),
    argMax(price, (trade_time, trade_id)),
    sum(qty),
    sum(quote_qty),
    sum(quote_qty) / sum(qty),
    count(),
    sumIf(qty, NOT is_buyer_maker),
    sumIf(qty, is_buyer_maker)
FROM trades FINAL
GROUP BY symbol, window_start
"""


@dataclass
class Filled:
    trades: int
    anomalies: int
    dead_letters: int
    first_ms: int        # oldest trade time after the shift
    last_ms: int         # newest trade time after the shift
    filled_at_ms: int


def shifted(trades: list[Trade], last_at_ms: int) -> list[Trade]:
    offset = last_at_ms - trades[-1].trade_time_ms
    return [t._replace(trade_time_ms=t.trade_time_ms + offset, event_time_ms=t.event_time_ms + offset)
            for t in trades]


def train_model(trades: list[Trade], version: str, cfg, seed: int) -> OnnxIsolationForest:
    matrix, _, _ = feature_matrix(trades, cfg.window_size, cfg.min_history)
    forest = fit(matrix, contamination=0.01, n_estimators=50, seed=seed)
    return OnnxIsolationForest.from_bytes(to_onnx_bytes(forest, matrix.shape[1]), version,
                                          thresholds(forest, matrix)["combined"], feature_ranges(matrix))


def recorded_dead_letters(cfg) -> list[tuple]:
    """The job's parse-stage dead letters for the recorded frames it cannot use."""
    rows = []
    with open(RECORDED_FRAMES, encoding="utf-8") as handle:
        next(handle)  # the URL line
        for line in handle:
            if ": " not in line:
                continue
            frame = line.split(": ", 1)[1].strip()
            try:
                parse_trade(frame, cfg.accepts)
            except InvalidTrade as error:
                rows.append(dead_letter("parse", str(error), frame)[1])
    return rows


def fill(store, now_ms: int) -> Filled:
    cfg = load({"SYMBOLS": SYMBOLS, "COOLDOWN_SECONDS": "5"}).detection
    by_symbol = {
        "ETHUSDT": list(trades_from_files([sample_path("ETHUSDT-trades-2023-02-02.csv")], "ETHUSDT")),
        "XRPETH": list(trades_from_files([sample_path("XRPETH-trades-2019-10-11.csv")], "XRPETH")),
    }
    by_symbol = {s: shifted(t, now_ms - LAST_TRADE_AGE_MS) for s, t in by_symbol.items()}
    xrp_half = by_symbol["XRPETH"][:len(by_symbol["XRPETH"]) // 2]
    models = {"XRPETH": train_model(xrp_half, MODEL_FOR["XRPETH"], cfg, seed=1),
              "ETHUSDT": train_model(xrp_half + by_symbol["ETHUSDT"][:500], MODEL_FOR["ETHUSDT"], cfg, seed=2)}
    store.apply_schema()
    trade_rows, anomaly_rows = [], []
    for symbol, trades in by_symbol.items():
        scored, anomalies = detect(trades, cfg, models[symbol])
        trade_rows += [trade_row(t, f, s, models[symbol].version)[1] for t, f, s in scored]
        anomaly_rows += [anomaly_row(a)[1] for a in anomalies]
    dead = recorded_dead_letters(cfg)
    store.insert("trades", trade_rows)
    store.insert("anomalies", anomaly_rows)
    store.insert("dead_letters", dead)
    for interval_s in (1, 60):
        store.query(BARS_FROM_TRADES, {"interval_s": interval_s})
    all_trades = [t for ts in by_symbol.values() for t in ts]
    return Filled(len(trade_rows), len(anomaly_rows), len(dead), min(t.trade_time_ms for t in all_trades),
                  max(t.trade_time_ms for t in all_trades), now_ms)
