"""The ad-hoc queries of sql/queries/ (docs/queries.md) on real bundled trades in chDB.

The store is filled without Flink by the job's own plain-Python pieces: detection
(flink_jobs/detectors/offline.py), the job's row builders and its bar arithmetic.
"""
from datetime import date, datetime, timezone

import pyarrow.parquet as pq
import pytest

from config import load
from flink_jobs.bars import OpenBars
from flink_jobs.detectors.offline import detect
from flink_jobs.operators import anomaly_row, trade_row
from flink_jobs.query import export_parquet, main as query_main
from flink_jobs.store import open_store
from flink_jobs.trades import parse_trade
from producer.sources import read_any

from tests.conftest import sample_path

ETH_DAY = date(2023, 2, 2)
EVERYTHING = {"from": "2017-07-01 00:00:00", "to": "2100-01-01 00:00:00"}
FILES = ("ETHUSDT-trades-2023-02-02.csv", "XRPETH-trades-2019-10-11.csv")


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """(store, anomalies): real ETHUSDT and XRPETH trades, their z-score anomalies and their bars."""
    env = {"CHDB_PATH": str(tmp_path_factory.mktemp("queries") / "chdb"), "SYMBOLS": "ETHUSDT,XRPETH",
           "DETECTION_METHODS": "zscore", "ZSCORE_THRESHOLDS": "ETHUSDT=3.0,XRPETH=3.0", "COOLDOWN_SECONDS": "5"}
    cfg = load(env)
    trades = [parse_trade(r.message, cfg.detection.accepts) for name in FILES for r in read_any(sample_path(name))]
    scored, anomalies = detect(trades, cfg.detection)
    bars: dict[str, OpenBars] = {}
    for trade, _, _ in scored:
        bars.setdefault(trade.symbol, OpenBars()).add(trade, -2**63)
    with open_store(cfg.store) as store:
        store.apply_schema()
        store.insert("trades", [trade_row(t, f, s, "")[1] for t, f, s in scored])
        store.insert("anomalies", [anomaly_row(a)[1] for a in anomalies])
        store.insert("bars", [row for symbol, b in bars.items() for row in b.close_until(2**63 - 1, symbol)])
        yield store, anomalies


def test_the_fixture_holds_real_anomalies_on_both_days(filled):
    _, anomalies = filled
    days = {datetime.fromtimestamp(a.trade.trade_time_ms / 1000, timezone.utc).date() for a in anomalies}
    assert ETH_DAY in days and len(days) >= 2


def test_top_anomalies_of_a_day_are_that_days_strongest_high_severity_first(filled):
    store, anomalies = filled
    rows = store.run_named("top_anomalies_of_day", {"day": ETH_DAY.isoformat(), "limit": 5})
    of_day = [a for a in anomalies if a.trade.symbol == "ETHUSDT"]
    assert len(rows) == min(5, len(of_day)) > 0
    assert all(r["trade_time"].date() == ETH_DAY and r["symbol"] == "ETHUSDT" for r in rows)
    ranks = [("high", "medium", "low").index(r["severity"]) for r in rows]
    assert ranks == sorted(ranks)
    strongest = max(of_day, key=lambda a: (-("high", "medium", "low").index(a.severity), abs(a.score) / a.threshold))
    assert rows[0]["price"] == strongest.trade.price
    assert store.run_named("top_anomalies_of_day", {"day": "2024-01-01", "limit": 5}) == []


def test_anomaly_rate_per_symbol_hour_counts_every_anomaly_against_the_hours_trades(filled):
    store, anomalies = filled
    rows = store.run_named("anomaly_rate_per_symbol_hour", EVERYTHING)
    assert sum(r["anomalies"] for r in rows) == len(anomalies)
    per_symbol_trades = {}
    for r in rows:
        per_symbol_trades[r["symbol"]] = per_symbol_trades.get(r["symbol"], 0) + r["trades"]
    assert per_symbol_trades == {"ETHUSDT": 1000, "XRPETH": 5000}  # one method: each hour once
    assert {r["hour"].minute for r in rows} == {0}
    busy = max(rows, key=lambda r: r["anomalies"])
    assert busy["per_1000_trades"] == pytest.approx(1000 * busy["anomalies"] / busy["trades"], abs=1e-3)


def test_bars_around_an_anomaly_span_the_minutes_asked_and_mark_the_bar_with_the_trade(filled):
    store, anomalies = filled
    anomaly = next(a for a in anomalies if a.trade.symbol == "ETHUSDT")
    rows = store.run_named("bars_around_anomaly", {"symbol": "ETHUSDT", "trade_id": anomaly.trade.trade_id,
                                                   "interval_s": 1, "minutes": 1})
    marked = [r for r in rows if r["holds_anomaly"]]
    assert len(marked) == 1
    assert marked[0]["low"] <= anomaly.trade.price <= marked[0]["high"]
    span = (rows[-1]["window_start"] - rows[0]["window_start"]).total_seconds()
    assert 0 < span <= 120 and all(r["low"] <= r["vwap"] <= r["high"] for r in rows)


def test_trades_around_an_anomaly_include_it_marked_with_its_methods(filled):
    store, anomalies = filled
    anomaly = next(a for a in anomalies if a.trade.symbol == "XRPETH")
    rows = store.run_named("trades_around_anomaly", {"symbol": "XRPETH", "trade_id": anomaly.trade.trade_id,
                                                     "seconds": 600})
    (marked,) = [r for r in rows if r["is_anomaly"]]
    assert marked["trade_id"] == anomaly.trade.trade_id and marked["price"] == anomaly.trade.price
    assert marked["methods_of_anomaly"] == "zscore" and len(rows) > 1
    times = [r["trade_time"] for r in rows]
    assert times == sorted(times) and (times[-1] - times[0]).total_seconds() <= 1200


def test_parquet_export_holds_every_anomaly_of_the_range_with_its_columns(filled, tmp_path):
    store, anomalies = filled
    path = str(tmp_path / "anomalies.parquet")
    assert export_parquet(store, "anomalies_export", EVERYTHING, path) == len(anomalies)
    table = pq.read_table(path)
    assert {"symbol", "trade_id", "method", "reason", "z_return", "model_version"} <= set(table.column_names)
    assert sorted(table.column("trade_id").to_pylist()) == sorted(a.trade.trade_id for a in anomalies)


def test_clickhouse_into_outfile_parquet_works_on_the_embedded_engine_too(filled, tmp_path):
    store, anomalies = filled
    path = str(tmp_path / "via-outfile.parquet")
    store.command(f"SELECT symbol, trade_id FROM anomalies FINAL INTO OUTFILE '{path}' FORMAT Parquet")
    assert pq.read_table(path).num_rows == len(anomalies)


def test_query_command_lists_queries_and_rejects_a_malformed_parameter(capsys):
    assert query_main(["--list"]) == 0
    assert "top_anomalies_of_day" in capsys.readouterr().out.split()
    assert query_main(["top_anomalies_of_day", "--param", "day"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err


def test_each_anomaly_keeps_the_zscore_that_decided_even_for_size_and_rate_alerts(filled):
    store, anomalies = filled
    stored = {(r["symbol"], r["trade_id"]): r for r in store.query(
        "SELECT symbol, trade_id, zscore, z_return FROM anomalies FINAL WHERE method = 'zscore'")}
    assert len(stored) == len(anomalies)
    for a in anomalies:
        assert stored[(a.trade.symbol, a.trade.trade_id)]["zscore"] == pytest.approx(a.zscore)
    # The column exists because z_return alone would misreport a size or rate alert.
    assert any(abs(r["zscore"]) > abs(r["z_return"]) + 1e-9 for r in stored.values())
