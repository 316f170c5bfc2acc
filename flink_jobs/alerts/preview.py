"""Which stored anomalies the alert settings would have sent: a dry run for tuning ALERT_*.

    python -m flink_jobs.alerts.preview [--from 2023-03-09T20:00] [--to 2023-03-10T22:00] [--show 20]

Reads the anomalies of the range from the store (CHDB_PATH or CLICKHOUSE_URL, like the job) in the
order the alert sink sees them (trade time, then DETECTION_METHODS order within a trade), runs them
through AlertPolicy with the current ALERT_* settings, and prints how many would be sent, filtered,
in cooldown or rate limited, then the alerts that would go out. Nothing is sent. The rate limit is
simulated as if the anomalies had arrived live (processing time = trade time).
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import datetime, timezone

import config as app_config
from config import METHODS, ConfigError
from flink_jobs.alerts.message import Alert, suppressed_note, utc_time
from flink_jobs.alerts.policy import SEND, AlertPolicy, Decision
from flink_jobs.store import StoreError, open_store

OUTCOME_ORDER = ("send", "method", "severity", "cooldown", "rate_limited")


class TradeClock:
    """Processing time as if live: the trade time of the anomaly being decided, in seconds."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sink_order(rows: list[dict], methods: tuple = METHODS) -> list[dict]:
    rank = {m: i for i, m in enumerate(methods)}
    return sorted(rows, key=lambda r: (r["trade_time_ms"], r["symbol"], r["trade_id"], rank.get(r["method"], 99)))


def preview(rows: list[dict], alerts, methods: tuple = METHODS) -> tuple[Counter, list[tuple[Alert, Decision]]]:
    """Outcome counts, and the (alert, decision) pairs that would be sent, in order."""
    clock = TradeClock()
    policy = AlertPolicy.from_config(alerts, clock)
    last: dict[str, int] = {}
    outcomes: Counter = Counter()
    sent = []
    for row in sink_order(rows, methods):
        alert = Alert(**{field: row[field] for field in Alert._fields})
        clock.now = alert.trade_time_ms / 1000
        decision = policy.decide(alert, last.get(alert.symbol))
        outcomes[decision.outcome] += 1
        if decision.outcome == SEND:
            last[alert.symbol] = alert.trade_time_ms
            sent.append((alert, decision))
    return outcomes, sent


def epoch_ms(text: str) -> int:
    """'2023-03-09T20:00' (UTC) or milliseconds -> milliseconds since the epoch."""
    if text.isdigit():
        return int(text)
    when = datetime.fromisoformat(text)
    return int((when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp() * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flink_jobs.alerts.preview", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="start", default="0", help="first trade time, UTC ISO or ms (default: all)")
    parser.add_argument("--to", dest="end", default=str(2**62), help="end of the range, exclusive")
    parser.add_argument("--chdb-path", help="embedded store directory [CHDB_PATH]")
    parser.add_argument("--show", type=int, default=20, help="alerts to list (default 20)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = app_config.load(store={"chdb_path": args.chdb_path})
        with open_store(cfg.store) as store:
            rows = store.run_named("alert_preview", {"from_ms": epoch_ms(args.start), "to_ms": epoch_ms(args.end)})
    except (ConfigError, StoreError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    outcomes, sent = preview(rows, cfg.alerts, cfg.detection.methods)
    a = cfg.alerts
    print(f"{len(rows)} anomalies; with ALERT_METHODS={','.join(a.methods)} ALERT_MIN_SEVERITY={a.min_severity} "
          f"ALERT_COOLDOWN_SECONDS={a.cooldown_seconds:g} ALERT_MAX_PER_MINUTE={a.max_per_minute}:")
    print("  " + ", ".join(f"{name} {outcomes.get(name, 0)}" for name in OUTCOME_ORDER))
    for alert, decision in sent[:args.show]:
        note = suppressed_note(decision.suppressed)
        print(f"  {utc_time(alert.trade_time_ms)} {alert.symbol} {alert.severity} {alert.method} trade {alert.trade_id}"
              + (f" ({note})" if note else ""))
    if len(sent) > args.show:
        print(f"  ... and {len(sent) - args.show} more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
