"""Which anomalies become alerts, in the order they are checked:

1. method: only ALERT_METHODS (default `combined`, the z-score confirmed by the forest: the fewest
   false alarms; the store and dashboards keep every method);
2. severity: at least ALERT_MIN_SEVERITY;
3. cooldown: one alert per symbol per ALERT_COOLDOWN_SECONDS of *event* time (trade time), whatever
   the method. Event time makes the decision a function of the input: a replay after a Flink restart
   decides exactly as the first run did, and a backtest at full speed alerts like the live market;
4. rate limit: a token bucket of ALERT_MAX_PER_MINUTE in *processing* time, because it protects
   the chat and the APIs' own limits (Telegram about 20 messages a minute in a group) in wall time.
   Alerts it holds back are counted per symbol and reported with the next message that goes out
   ("+N more suppressed"), or in a summary of their own (take_summary).

Plain Python with an injected clock; the Flink operator keeps the cooldown's last alert time per
symbol in keyed state and passes it in.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Callable, NamedTuple

from config import SEVERITIES
from flink_jobs.alerts.message import Alert, Suppressed

SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
SEND, METHOD, SEVERITY, COOLDOWN, RATE_LIMITED = "send", "method", "severity", "cooldown", "rate_limited"


class Decision(NamedTuple):
    outcome: str                    # SEND or why not: METHOD, SEVERITY, COOLDOWN, RATE_LIMITED
    suppressed: Suppressed | None   # with SEND: what the rate limit held back before this alert

    @property
    def send(self) -> bool:
        return self.outcome == SEND


class TokenBucket:
    """`per_minute` tokens at most, refilled continuously at per_minute/60 a second."""

    def __init__(self, per_minute: int, clock: Callable[[], float]):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.tokens = self.capacity
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self) -> bool:
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class AlertPolicy:
    def __init__(self, min_severity: str, methods: tuple, cooldown_seconds: float, max_per_minute: int,
                 clock: Callable[[], float] = time.monotonic):
        self.min_rank = SEVERITY_RANK[min_severity]
        self.methods = frozenset(methods)
        self.cooldown_ms = int(cooldown_seconds * 1000)
        self.bucket = TokenBucket(max_per_minute, clock)
        self.suppressed: Counter = Counter()  # symbol -> alerts held back by the rate limit, not yet reported

    @classmethod
    def from_config(cls, alerts, clock: Callable[[], float] = time.monotonic) -> "AlertPolicy":
        return cls(alerts.min_severity, alerts.methods, alerts.cooldown_seconds, alerts.max_per_minute, clock)

    def decide(self, alert: Alert, last_alert_ms: int | None) -> Decision:
        """Whether `alert` goes out; `last_alert_ms` is the trade time of the symbol's last alert sent.
        On SEND the caller records alert.trade_time_ms as the symbol's new last alert time."""
        if alert.method not in self.methods:
            return Decision(METHOD, None)
        if SEVERITY_RANK.get(alert.severity, -1) < self.min_rank:
            return Decision(SEVERITY, None)
        if last_alert_ms is not None and alert.trade_time_ms - last_alert_ms < self.cooldown_ms:
            return Decision(COOLDOWN, None)
        if not self.bucket.take():
            # Held back, not forgotten: counted, and reported with the next message. The cooldown is
            # not started, so the symbol's next anomaly may still go out once tokens are back.
            self.suppressed[alert.symbol] += 1
            return Decision(RATE_LIMITED, None)
        return Decision(SEND, self._report_suppressed())

    def take_summary(self, force: bool = False) -> Suppressed | None:
        """The suppressed alerts as a message of their own, when there are some and a token is free
        (or `force`: when the job stops, the last word is sent regardless of the limit)."""
        if not self.suppressed or not (force or self.bucket.take()):
            return None
        return self._report_suppressed()

    @property
    def pending_suppressed(self) -> int:
        return sum(self.suppressed.values())

    def _report_suppressed(self) -> Suppressed | None:
        if not self.suppressed:
            return None
        report = Suppressed(sum(self.suppressed.values()), tuple(self.suppressed.most_common()))
        self.suppressed.clear()
        return report
