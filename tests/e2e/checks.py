"""Assertions on what a job run left in the store, shared by the MiniCluster and cluster tests."""
from __future__ import annotations

import re

from config import load
from flink_jobs.store import open_store

from tests.e2e.planted import Expected


def stored(chdb_path: str) -> dict:
    with open_store(load({"CHDB_PATH": chdb_path}).store) as store:
        return {
            "trades": {r["symbol"]: r["n"] for r in store.query(
                "SELECT symbol, count() AS n FROM trades FINAL GROUP BY symbol")},
            "raw_trade_rows": store.scalar("SELECT count() FROM trades"),
            "unique_trades": store.scalar("SELECT uniqExact(symbol, trade_id) FROM trades"),
            "anomalies": {(r["symbol"], r["trade_id"], r["method"]) for r in store.query(
                "SELECT symbol, trade_id, method FROM anomalies FINAL")},
            "model_versions": {r["model_version"] for r in store.query(
                "SELECT DISTINCT model_version FROM trades FINAL")},
            "anomaly_rows": store.scalar("SELECT count() FROM anomalies FINAL"),
            "dead_letters": store.query("SELECT stage, reason, raw, symbol FROM dead_letters FINAL"),
            "bar_trades": {(r["symbol"], r["interval_s"]): r["n"] for r in store.query(
                "SELECT symbol, interval_s, sum(trade_count) AS n FROM bars FINAL GROUP BY symbol, interval_s")},
        }


def late_for_bars(result: dict) -> dict:
    """(symbol, interval_s) -> trades that were dead letters late for that bar."""
    late: dict = {}
    for d in result["dead_letters"]:
        if d["stage"] == "bars":
            for part in re.search(r"missing from its (.*) bar", d["reason"]).group(1).split(" and "):
                key = (d["symbol"], int(part.split()[0]))
                late[key] = late.get(key, 0) + 1
    return late


def assert_bars_cover_every_trade(result: dict, expected: Expected, replayed: bool) -> None:
    """The 1 s and the 1 min bars hold every stored trade once (the repeat in none), except the
    trades that were late for them, each a dead letter. The planted input interleaves 2019 and
    2023 trades in one partition, so most 2019 ones are late (how many depends on when the
    other, empty partition's reader finishes and stops holding the watermark back)."""
    late = late_for_bars(result)
    for symbol, trades in expected.trades.items():
        for interval_s in (1, 60):
            in_bars = result["bar_trades"].get((symbol, interval_s), 0)
            missed = late.get((symbol, interval_s), 0)
            if replayed:
                # A trade late in one run may be in time in the next: its bar then holds it and
                # its dead letter stays.
                assert in_bars <= trades <= in_bars + missed, (symbol, interval_s, in_bars, missed)
            else:
                assert in_bars + missed == trades, (symbol, interval_s, in_bars, missed)


def assert_store_holds_exactly(result: dict, expected: Expected, model_version: str, replayed: bool = False) -> None:
    # Every valid trade exactly once.
    assert result["trades"] == expected.trades
    assert result["unique_trades"] == sum(expected.trades.values())
    assert result["model_versions"] == {model_version}
    # The planted spikes are detected by the z-score method, and the streaming job found exactly
    # what the plain-Python reference finds on the same input, method by method.
    spikes = {(symbol, trade_id, "zscore") for symbol, trade_id in expected.spikes}
    assert spikes <= result["anomalies"], f"missed spikes: {spikes - result['anomalies']}"
    assert {"zscore", "iforest", "combined"} == {method for _, _, method in expected.anomalies}
    assert result["anomalies"] == expected.anomalies
    assert result["anomaly_rows"] == len(expected.anomalies)
    assert_bars_cover_every_trade(result, expected, replayed)
    # Every malformed message is a dead letter, whole, with its reason.
    dead = [d for d in result["dead_letters"] if d["stage"] != "bars"]
    assert len(dead) == len(expected.dead_letters)
    for stage, reason, raw in expected.dead_letters:
        matches = [d for d in dead if d["stage"] == stage and reason in d["reason"]
                   and (raw is None or d["raw"] == raw)]
        assert len(matches) == 1, f"dead letter ({stage}, {reason!r}) found {len(matches)} times in {dead}"
