"""The job in a MiniCluster over the planted input (bounded file source, no broker) with both alert
channels pointed at loopback stand-ins that fail their first request: every stored anomaly that
passes the alert policy arrives once on each channel, and nothing else does."""
import html
import os
import re

import pytest

from config import METHODS, load
from flink_jobs.alerts.message import Alert
from flink_jobs.alerts.policy import SEVERITY_RANK, AlertPolicy
from flink_jobs.detectors.iforest import OnnxIsolationForest
from flink_jobs.store import open_store

from tests.e2e import planted
from tests.e2e.conftest import run_python, stack_env
from tests.webhook_server import WebhookServer

pytestmark = pytest.mark.e2e

TOKEN = "987654:e2e-secret-token"
SLACK_PATH = "/services/TE2E/BE2E/e2e-secret-key"
DASHBOARD = "http://grafana.local/d/market?var-symbol={symbol}&from={from_ms}&to={to_ms}"
ALERT_ENV = {"ALERT_METHODS": "zscore,combined", "ALERT_MIN_SEVERITY": "medium", "ALERT_COOLDOWN_SECONDS": "20",
             "ALERT_MAX_PER_MINUTE": "1000", "ALERT_RETRY_INITIAL_S": "0.05", "ALERT_DASHBOARD_URL": DASHBOARD}


def stored_anomalies(chdb_path: str) -> list[dict]:
    with open_store(load({"CHDB_PATH": chdb_path}).store) as store:
        return store.query("SELECT symbol, trade_id, toUnixTimestamp64Milli(trade_time) AS time_ms, method, "
                           "severity, reason FROM anomalies FINAL")


def expected_alerts(anomalies: list[dict]) -> list[dict]:
    """The policy applied to the stored anomalies in the order the job saw them: per symbol by trade
    id, and per trade in DETECTION_METHODS order (the rate limit is set too high to matter)."""
    policy = AlertPolicy.from_config(load(ALERT_ENV).alerts)
    last: dict = {}
    sent = []
    for row in sorted(anomalies, key=lambda r: (r["symbol"], r["trade_id"], METHODS.index(r["method"]))):
        alert = Alert(row["symbol"], row["trade_id"], row["time_ms"], row["method"], row["severity"], 0.0, 0.0,
                      0.0, 0.0, "", row["reason"])
        if policy.decide(alert, last.get(alert.symbol)).send:
            last[alert.symbol] = alert.trade_time_ms
            sent.append(row)
    return sent


def telegram_keys(texts: list[str]) -> list[tuple]:
    keys = []
    for text in texts:
        symbol, severity, method = re.search(r"<b>(\w+) (\w+) anomaly \((\w+)\)</b>", text).groups()
        keys.append((symbol, int(re.search(r"<b>Trade:</b> (\d+) at", text).group(1)), method, severity))
    return keys


def slack_keys(payloads: list[dict]) -> list[tuple]:
    keys = []
    for payload in payloads:
        text = payload["blocks"][0]["text"]["text"]
        symbol, severity, method = re.search(r"\*(\w+) (\w+) anomaly \((\w+)\)\*", text).groups()
        keys.append((symbol, int(re.search(r"\*Trade:\* (\d+) at", text).group(1)), method, severity))
    return keys


def run_job_with_alerts(trained_model, tmp_path, telegram: WebhookServer, slack: WebhookServer, **settings):
    """The planted input through the job with both channels at the stand-ins; returns (job, store path)."""
    planted.build(str(tmp_path / "planted.jsonl"), OnnxIsolationForest.from_registry(trained_model))
    chdb_path = str(tmp_path / "chdb")
    env = stack_env(MODEL_REGISTRY=os.path.dirname(os.path.dirname(trained_model.onnx_path)), CHDB_PATH=chdb_path,
                    TELEGRAM_API_URL=telegram.url, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_CHAT_ID="-1001",
                    SLACK_WEBHOOK_URL=slack.url + SLACK_PATH, **planted.JOB_ENV, **{**ALERT_ENV, **settings})
    result = run_python(["flink_jobs/anomaly_job.py", "--source", "files", "--input",
                         str(tmp_path / "planted.jsonl")], env)
    return result, chdb_path


def test_job_sends_each_stored_anomaly_that_passes_the_policy_once_to_telegram_and_slack(trained_model, tmp_path):
    # Each stand-in fails its first request (a 500, a dropped connection): the sender retries.
    with WebhookServer("telegram", [("status", 500, {}, b"")]) as telegram, \
            WebhookServer("slack", [("drop",)]) as slack:
        result, chdb_path = run_job_with_alerts(trained_model, tmp_path, telegram, slack)
    anomalies = stored_anomalies(chdb_path)
    expected = expected_alerts(anomalies)
    # The policy filters something of every kind on this input, and leaves alerts of both methods.
    assert len(anomalies) > len(expected) >= 4
    assert {r["method"] for r in expected} == {"zscore", "combined"}
    assert {r["method"] for r in anomalies} - {r["method"] for r in expected} == {"iforest"}

    expected_keys = sorted((r["symbol"], r["trade_id"], r["method"], r["severity"]) for r in expected)
    telegram_texts = [body["text"] for body in telegram.delivered()]
    assert sorted(telegram_keys(telegram_texts)) == expected_keys
    assert sorted(slack_keys(slack.delivered())) == expected_keys
    assert len(telegram.requests) == len(expected) + 1 and len(slack.requests) == len(expected) + 1

    by_key = {(r["symbol"], r["trade_id"]): r for r in expected}
    for text, (symbol, trade_id, _, _) in zip(telegram_texts, telegram_keys(telegram_texts)):
        row = by_key[(symbol, trade_id)]
        assert html.escape(row["reason"]) in text
        assert f'href="http://grafana.local/d/market?var-symbol={symbol}&amp;from={row["time_ms"] - 900_000}' in text
    assert all(r["path"] == f"/bot{TOKEN}/sendMessage" for r in telegram.requests)
    assert TOKEN not in result.stderr and "e2e-secret-key" not in result.stderr
    assert "alerts to TelegramChannel(" in result.stderr
    # The sink's own account when the bounded input ended (the Python workers log to the job's stderr).
    n = len(expected)
    assert f"alerts: queued {n}, slack_sent {n}, telegram_sent {n}" in result.stderr


def test_job_under_a_tight_rate_limit_sends_some_alerts_and_accounts_for_every_other_one(trained_model, tmp_path):
    """Which alerts win the tokens depends on timing; the account does not: per symbol, every
    anomaly that passes method and severity is sent once, silenced by the cooldown of an alert
    that was sent, or counted in a "+N more suppressed" note."""
    with WebhookServer("telegram") as telegram, WebhookServer("slack") as slack:
        result, chdb_path = run_job_with_alerts(trained_model, tmp_path, telegram, slack, ALERT_MAX_PER_MINUTE="2")
    texts = [body["text"] for body in telegram.delivered()]
    sent = {(symbol, trade_id, method) for symbol, trade_id, method, _ in
            telegram_keys([t for t in texts if "anomaly (" in t])}
    noted: dict = {}
    for count, detail in re.findall(r"\+(\d+) more suppressed by the rate limit \(([^)]*)\)", "\n".join(texts)):
        parts = dict(part.rsplit(" ", 1) for part in detail.split(", "))
        assert sum(map(int, parts.values())) == int(count)
        for symbol, n in parts.items():
            noted[symbol] = noted.get(symbol, 0) + int(n)

    policy = load(ALERT_ENV).alerts
    cooldown_ms = int(policy.cooldown_seconds * 1000)
    worthy = sorted((r for r in stored_anomalies(chdb_path) if r["method"] in policy.methods
                     and SEVERITY_RANK[r["severity"]] >= SEVERITY_RANK[policy.min_severity]),
                    key=lambda r: (r["symbol"], r["trade_id"], METHODS.index(r["method"])))
    last: dict = {}
    suppressed: dict = {}
    for row in worthy:
        symbol = row["symbol"]
        if symbol in last and row["time_ms"] - last[symbol] < cooldown_ms:
            continue  # silenced by the cooldown of an alert that went out (checked before the rate limit)
        if (symbol, row["trade_id"], row["method"]) in sent:
            last[symbol] = row["time_ms"]
        else:
            suppressed[symbol] = suppressed.get(symbol, 0) + 1
    assert 2 <= len(sent) < len(worthy)
    assert sum(suppressed.values()) > 0 and suppressed == noted
    assert len(texts) == len(slack.delivered())
    n = len(texts)
    assert f"alerts: queued {n}, slack_sent {n}, telegram_sent {n}" in result.stderr
