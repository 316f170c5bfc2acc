"""What an alert says, and how Telegram (HTML) and Slack (mrkdwn + blocks) render it.

An Alert is a small, picklable record made from an Anomaly in the cooldown operator: the sink
needs the facts a person reads, not the full feature vector.
"""
from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from typing import Callable, NamedTuple

# The dashboard link covers this much market time on either side of the trade.
DASHBOARD_SPAN_MS = 15 * 60 * 1000
# Telegram refuses messages over 4096 characters, Slack section texts over 3000: long reasons are cut.
MAX_REASON_CHARS = 1500
SEVERITY_ICON = {"low": "\N{LARGE BLUE CIRCLE}", "medium": "\N{LARGE ORANGE CIRCLE}",
                 "high": "\N{LARGE RED CIRCLE}"}


class Alert(NamedTuple):
    symbol: str
    trade_id: int
    trade_time_ms: int
    method: str
    severity: str
    price: float
    price_change_pct: float
    zscore: float
    if_score: float       # NaN when no model scored the trade
    model_version: str    # "" when no model scored the trade
    reason: str


class Suppressed(NamedTuple):
    """Alerts the rate limit held back since the last message, by symbol: '+N more suppressed'."""
    count: int
    by_symbol: tuple      # ((symbol, count), ...) most first


def alert_from_anomaly(anomaly) -> Alert:
    t, f = anomaly.trade, anomaly.features
    return Alert(t.symbol, t.trade_id, t.trade_time_ms, anomaly.method, anomaly.severity, t.price,
                 f.price_change_pct, anomaly.zscore, anomaly.if_score, anomaly.model_version, anomaly.reason)


def utc_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def dashboard_link(template: str, alert: Alert) -> str:
    """The dashboard URL for the alert's symbol and the market time around it; '' without a template."""
    if not template:
        return ""
    t = alert.trade_time_ms
    return template.format(symbol=alert.symbol, from_ms=t - DASHBOARD_SPAN_MS, to_ms=t + DASHBOARD_SPAN_MS, time_ms=t)


def _fit(text: str, escape: Callable[[str], str], limit: int = MAX_REASON_CHARS) -> str:
    """escape(text), cut so that the *escaped* text fits `limit` (escaping can make it 5x longer)
    and never in the middle of an escape sequence."""
    if len(escape(text)) <= limit:
        return escape(text)
    lo, hi = 0, len(text)  # the longest prefix whose escaped form plus an ellipsis fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(escape(text[:mid])) < limit:
            lo = mid
        else:
            hi = mid - 1
    return escape(text[:lo]) + "\N{HORIZONTAL ELLIPSIS}"


def _forest(alert: Alert) -> str:
    if math.isnan(alert.if_score):
        return "no model"
    return f"{alert.if_score:+.3f} (model {alert.model_version})"


def facts(alert: Alert) -> list[tuple[str, str]]:
    """(label, value) lines shared by both channels, unescaped."""
    return [("Price", f"{alert.price:.8g} ({alert.price_change_pct:+.3f}% in one trade)"),
            ("Z-score", f"{alert.zscore:+.1f}"),
            ("IF score", _forest(alert)),
            ("Trade", f"{alert.trade_id} at {utc_time(alert.trade_time_ms)}")]


def headline(alert: Alert) -> str:
    return f"{alert.symbol} {alert.severity} anomaly ({alert.method})"


def suppressed_note(suppressed: Suppressed | None) -> str:
    if not suppressed or not suppressed.count:
        return ""
    detail = ", ".join(f"{symbol} {n}" for symbol, n in suppressed.by_symbol)
    return f"+{suppressed.count} more suppressed by the rate limit ({detail})"


# Telegram, parse_mode HTML: only <, > and & need escaping (quotes too inside attributes).
def telegram_text(alert: Alert, dashboard_template: str = "", suppressed: Suppressed | None = None) -> str:
    esc = html.escape
    lines = [f"{SEVERITY_ICON.get(alert.severity, '')} <b>{esc(headline(alert))}</b>",
             *(f"<b>{label}:</b> {esc(value)}" for label, value in facts(alert)),
             _fit(alert.reason, esc)]
    link = dashboard_link(dashboard_template, alert)
    if link:
        lines.append(f'<a href="{esc(link, quote=True)}">Dashboard</a>')
    note = suppressed_note(suppressed)
    if note:
        lines.append(f"<i>{esc(note)}</i>")
    return "\n".join(lines)


def telegram_summary(suppressed: Suppressed) -> str:
    return f"<i>{html.escape(suppressed_note(suppressed))}</i>"


# Slack mrkdwn: &, < and > must be escaped (< starts a link or mention); nothing else.
def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_link(url: str, label: str) -> str:
    # Slack reads &amp; as & everywhere, URLs included; a '|', '<' or '>' in the URL would end the
    # link early, so they are percent-encoded instead.
    safe_url = url.replace("&", "&amp;").replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{safe_url}|{slack_escape(label)}>"


def slack_payload(alert: Alert, dashboard_template: str = "", suppressed: Suppressed | None = None) -> dict:
    """Incoming-webhook payload: `text` is the notification fallback, `blocks` the message."""
    esc = slack_escape
    title = f"{SEVERITY_ICON.get(alert.severity, '')} *{esc(headline(alert))}*"
    details = "\n".join(f"*{label}:* {esc(value)}" for label, value in facts(alert))
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"{title}\n{details}"}},
              {"type": "section", "text": {"type": "mrkdwn", "text": _fit(alert.reason, esc)}}]
    context = []
    link = dashboard_link(dashboard_template, alert)
    if link:
        context.append(slack_link(link, "Dashboard"))
    note = suppressed_note(suppressed)
    if note:
        context.append(esc(note))
    if context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": c} for c in context]})
    return {"text": _fit(f"{headline(alert)}: {alert.reason}", esc, 300), "blocks": blocks}


def slack_summary(suppressed: Suppressed) -> dict:
    note = slack_escape(suppressed_note(suppressed))
    return {"text": note, "blocks": [{"type": "context", "elements": [{"type": "mrkdwn", "text": note}]}]}
