"""One self-contained HTML page: the charts inlined as base64 PNG data, the tables as text, no
script, no stylesheet or font from anywhere else, so the file opens offline and can be mailed."""
from __future__ import annotations

import base64
import datetime as dt
import html

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.3em 0; }
.high { color: #b00; font-weight: bold; } .medium { color: #c60; }
"""


def _cell(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        text = value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if isinstance(value, dt.datetime) else str(value)
        return f"<td>{html.escape(text)}</td>"
    return f'<td class="num">{value}</td>'


def table(table_id: str, rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return f'<p id="{table_id}">none</p>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(r[c]) for c in columns) + "</tr>" for r in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def inline_png(path: str, alt: str) -> str:
    with open(path, "rb") as handle:
        data = base64.b64encode(handle.read()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render(views, images: dict[str, str], store_description: str, generated_at: dt.datetime) -> str:
    total_trades = sum(r["trades"] for r in views.trades)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>Crypto anomaly report</title>", f"<style>{STYLE}</style></head><body>",
        "<h1>Crypto anomaly report</h1>",
        f"<p>Store: {html.escape(store_description)}. Generated {generated_at:%Y-%m-%d %H:%M:%S} UTC.</p>",
        f'<p>Trades: <span id="trades-total">{total_trades}</span>; anomalies: '
        f'<span id="anomalies-total">{views.anomalies_total}</span>; dead letters: '
        f'<span id="dead-letters-total">{views.dead_letters_total}</span>.</p>',
        "<h2>Trades per symbol</h2>",
        table("trades", views.trades, ["symbol", "trades", "first_trade", "last_trade", "min_price", "max_price"]),
        "<h2>Price with anomalies</h2>",
    ]
    for series in views.prices:
        parts.append(f'<h3 id="price-{html.escape(series.symbol)}">{html.escape(series.symbol)}</h3>')
        parts.append(inline_png(images[series.symbol], f"{series.symbol} price with anomalies"))
    parts += ["<h2>Anomalies per method and kind</h2>",
              "<p>kind: the z-score signal that stood out most (return, volume or rate), chosen as the z-score "
              "method chooses it; for zscore and combined it is the signal that fired, for iforest it may be "
              "below the threshold.</p>"]
    if "counts" in images:
        parts.append(inline_png(images["counts"], "anomalies per method and kind"))
    parts.append(table("counts", views.counts, ["method", "kind", "anomalies"]))
    parts += [f"<h2>Top {len(views.top_anomalies)} anomalies (severity, then |z-score|)</h2>",
              table("top-anomalies", views.top_anomalies,
                    ["trade_time", "symbol", "method", "kind", "severity", "z_score", "if_score", "model_version",
                     "price", "reason"]).replace("<td>high</td>", '<td class="high">high</td>')
                                         .replace("<td>medium</td>", '<td class="medium">medium</td>'),
              "<h2>Dead letters</h2>",
              table("dead-letters", views.dead_letters, ["stage", "reason_kind", "messages"]),
              "</body></html>"]
    return "\n".join(parts)
