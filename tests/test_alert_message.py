"""What an alert says, and that each channel's markup is escaped so a reason cannot break it."""
import math
import re

from config import load
from flink_jobs.alerts.message import (DASHBOARD_SPAN_MS, Alert, Suppressed, alert_from_anomaly, dashboard_link,
                                       slack_payload, telegram_text)
from flink_jobs.detectors.methods import ScoredBatch, candidates, explain
from flink_jobs.detectors.zscore import ZScoreDetector
from flink_jobs.features.symbol_state import SymbolState, observe
from flink_jobs.trades import Trade

TEMPLATE = "https://grafana.example/d/market?var-symbol={symbol}&from={from_ms}&to={to_ms}"
# 2023-03-10 21:57:57.945 UTC
ALERT = Alert("ETHUSDT", 4242, 1678485477945, "combined", "high", 1432.17, -0.084, -3.7, -0.045,
              "20261127T034634Z", "ETHUSDT moved <-0.084%> in one trade & the forest agrees")


def test_telegram_message_says_what_happened_with_html_escaped_and_a_link():
    text = telegram_text(ALERT, TEMPLATE)
    for fact in ("<b>ETHUSDT high anomaly (combined)</b>", "1432.17 (-0.084% in one trade)", "<b>Z-score:</b> -3.7",
                 "-0.045 (model 20261127T034634Z)", "4242 at 2023-03-10 21:57:57.945 UTC"):
        assert fact in text
    assert "ETHUSDT moved &lt;-0.084%&gt; in one trade &amp; the forest agrees" in text
    start, end = ALERT.trade_time_ms - DASHBOARD_SPAN_MS, ALERT.trade_time_ms + DASHBOARD_SPAN_MS
    assert f'<a href="https://grafana.example/d/market?var-symbol=ETHUSDT&amp;from={start}&amp;to={end}">' in text
    # Only the tags Telegram's HTML mode knows, and every one we open is closed.
    tags = re.findall(r"</?([a-z]+)", text)
    assert set(tags) <= {"b", "i", "a"}
    assert all(tags.count(t) % 2 == 0 for t in set(tags))


def test_slack_message_escapes_mrkdwn_and_links_the_dashboard():
    payload = slack_payload(ALERT, TEMPLATE, Suppressed(3, (("BTCUSDT", 2), ("SOLUSDT", 1))))
    section, reason, context = payload["blocks"]
    assert section["text"]["type"] == "mrkdwn"
    assert "*ETHUSDT high anomaly (combined)*" in section["text"]["text"]
    assert "*IF score:* -0.045 (model 20261127T034634Z)" in section["text"]["text"]
    assert reason["text"]["text"] == "ETHUSDT moved &lt;-0.084%&gt; in one trade &amp; the forest agrees"
    link, note = (e["text"] for e in context["elements"])
    start = ALERT.trade_time_ms - DASHBOARD_SPAN_MS
    assert link.startswith(f"<https://grafana.example/d/market?var-symbol=ETHUSDT&amp;from={start}&amp;to=")
    assert link.endswith("|Dashboard>")
    assert note == "+3 more suppressed by the rate limit (BTCUSDT 2, SOLUSDT 1)"
    assert payload["text"].startswith("ETHUSDT high anomaly (combined): ETHUSDT moved &lt;-0.084%&gt;")


def test_no_dashboard_link_without_a_template_and_no_model_without_a_score():
    plain = ALERT._replace(if_score=math.nan, model_version="")
    assert "<a " not in telegram_text(plain) and "no model" in telegram_text(plain)
    assert len(slack_payload(plain)["blocks"]) == 2  # no context block: no link, nothing suppressed
    assert dashboard_link("", plain) == ""


def test_a_huge_reason_is_cut_below_the_channels_limits():
    long = ALERT._replace(reason="x<" * 10_000)
    assert len(telegram_text(long, TEMPLATE)) < 4096
    assert all(len(b["text"]["text"]) <= 3000 for b in slack_payload(long, TEMPLATE)["blocks"] if "text" in b)


def test_alert_from_anomaly_carries_the_anomalys_facts():
    config = load({"DETECTION_METHODS": "zscore"}).detection
    state = SymbolState(1000)
    for i in range(300):
        observe(state, Trade("BTCUSDT", i, 100.0 + (i % 3) * 0.01, 1.0, 1_000 * i, 1_000 * i, i % 2 == 0))
    spike = Trade("BTCUSDT", 300, 102.0, 1.0, 300_000, 300_000, False)
    features = observe(state, spike)
    batch = ScoredBatch([math.nan], [1], "", -math.inf, lambda f: None)
    zscore = ZScoreDetector(config)
    [candidate] = candidates(config, zscore, spike, features, math.nan, 1, batch)
    anomaly = explain(candidate, zscore)
    alert = alert_from_anomaly(anomaly)
    assert (alert.symbol, alert.trade_id, alert.trade_time_ms, alert.method, alert.price) == \
        ("BTCUSDT", 300, 300_000, "zscore", 102.0)
    assert alert.zscore == anomaly.zscore and alert.reason == anomaly.reason and alert.severity == anomaly.severity
    assert math.isclose(alert.price_change_pct, features.price_change_pct)
