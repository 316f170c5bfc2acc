"""The dry run over a real chDB store: stored anomalies through the alert policy, nothing sent."""
from config import load
from flink_jobs.alerts.preview import main, preview
from flink_jobs.store import open_store

T0 = 1_678_392_000_000  # 2023-03-09 20:00 UTC


def anomaly_row(symbol, trade_id, seconds, method, severity, score=-5.0):
    """A row of the anomalies table (store.TABLE_COLUMNS order)."""
    return (symbol, trade_id, T0 + int(seconds * 1000), method, 100.0, score, 3.5, severity,
            f"{symbol} moved <fast> & far", 1.0, -4.0, -0.001, -0.09, "v1", -4.0, -0.1, 0.1, -0.1, 1.0, 0.0, 1.0,
            0.0, 0.0, 0.0, -4.0)


ROWS = [
    anomaly_row("ETHUSDT", 10, 0, "zscore", "high"),        # method filtered (default: combined only)
    anomaly_row("ETHUSDT", 10, 0, "combined", "high"),      # sent
    anomaly_row("ETHUSDT", 11, 60, "combined", "high"),     # cooldown (300 s)
    anomaly_row("ETHUSDT", 12, 400, "combined", "low"),     # severity filtered
    anomaly_row("ETHUSDT", 13, 400, "combined", "medium"),  # sent: cooldown over
    anomaly_row("BTCUSDT", 20, 30, "combined", "medium"),   # sent: another symbol
    anomaly_row("BTCUSDT", 21, 30, "iforest", "high", -0.2),
]


def test_preview_counts_each_outcome_and_lists_what_would_be_sent(tmp_path, capsys):
    path = str(tmp_path / "chdb")
    with open_store(load({"CHDB_PATH": path}).store) as store:
        store.apply_schema()
        store.insert("anomalies", ROWS)
    assert main(["--chdb-path", path, "--from", "2023-03-09T20:00", "--to", "2023-03-09T21:00"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("7 anomalies; with ALERT_METHODS=combined ALERT_MIN_SEVERITY=medium")
    assert out[1] == "  send 3, method 2, severity 1, cooldown 1, rate_limited 0"
    assert out[2:] == ["  2023-03-09 20:00:00.000 UTC ETHUSDT high combined trade 10",
                       "  2023-03-09 20:00:30.000 UTC BTCUSDT medium combined trade 20",
                       "  2023-03-09 20:06:40.000 UTC ETHUSDT medium combined trade 13"]


def test_preview_simulates_the_rate_limit_in_trade_time():
    rows = [{"symbol": f"S{i}X", "trade_id": i, "trade_time_ms": T0 + i * 1000, "method": "combined",
             "severity": "high", "price": 1.0, "price_change_pct": 0.0, "zscore": 9.0, "if_score": -0.2,
             "model_version": "v1", "reason": "r"} for i in range(5)]
    outcomes, sent = preview(rows, load({"ALERT_MAX_PER_MINUTE": "2"}).alerts)
    assert (outcomes["send"], outcomes["rate_limited"]) == (2, 3)
    rows.append({**rows[0], "symbol": "LATE", "trade_time_ms": T0 + 60_000})  # 30 s refill a token
    outcomes, sent = preview(rows, load({"ALERT_MAX_PER_MINUTE": "2"}).alerts)
    assert outcomes["send"] == 3 and sent[-1][1].suppressed.count == 3
