"""Flink glue: the alert sink operator behind the cooldown operator.

Runs as one subtask keyed by symbol, so the rate limit is global to the job, and the cooldown's
last alert time per symbol lives in keyed state (checkpointed: after a restart the replayed
anomalies are decided as before). The policy decides on the record path, which costs
microseconds; HTTP happens in the AlertSender's thread. Counters: alerts_sent, alerts_failed,
alerts_dropped (per message and channel, from the sender), alerts_filtered, alerts_cooldown and
alerts_rate_limited (policy decisions).
"""
from __future__ import annotations

import logging

from pyflink.common import Types
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from config import AlertConfig
from flink_jobs.alerts.channels import RetryPolicy, channels_from_config
from flink_jobs.alerts.message import Alert
from flink_jobs.alerts.policy import COOLDOWN, METHOD, RATE_LIMITED, SEND, SEVERITY, AlertPolicy
from flink_jobs.alerts.sender import AlertSender
from flink_jobs.counters import OperatorCounters

log = logging.getLogger(__name__)


def describe_alerting(alerts: AlertConfig) -> str:
    """One line saying where alerts go and which, secrets left out (for the job's start-up log)."""
    if not alerts.enabled:
        return ("alerts off: set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID, or SLACK_WEBHOOK_URL, to send "
                "anomalies to Telegram or Slack")
    channels = ", ".join(repr(c) for c in channels_from_config(alerts))
    return (f"alerts to {channels}: methods {','.join(alerts.methods)}, severity {alerts.min_severity} and up, "
            f"one per symbol per {alerts.cooldown_seconds:g} s of trade time, at most {alerts.max_per_minute}/min")


class AlertSink(KeyedProcessFunction):
    def __init__(self, alerts: AlertConfig):
        self.alerts = alerts

    def open(self, runtime_context: RuntimeContext):
        from flink_jobs.operators import exit_with_taskmanager
        from flink_jobs.worker_gc import settle_after_open

        exit_with_taskmanager()
        self.last_alert_ms = runtime_context.get_state(ValueStateDescriptor("last_alert_ms", Types.LONG()))
        self.policy = AlertPolicy.from_config(self.alerts)
        self.sender = AlertSender(channels_from_config(self.alerts), RetryPolicy.from_config(self.alerts),
                                  self.alerts.queue_size, self.alerts.close_timeout_s)
        # Counts made in the summary timer (deliveries) reach Flink only this way.
        self.counters = metrics = OperatorCounters(runtime_context.get_metrics_group())
        filtered = metrics.counter("alerts_filtered")  # by method or severity: not alert-worthy
        self.decisions = {METHOD: filtered, SEVERITY: filtered, COOLDOWN: metrics.counter("alerts_cooldown"),
                          RATE_LIMITED: metrics.counter("alerts_rate_limited"),
                          SEND: metrics.counter("alerts_submitted")}
        self.delivery = {name: metrics.counter(f"alerts_{name}") for name in ("sent", "failed", "dropped")}
        self.reported = {name: 0 for name in self.delivery}
        # One summary timer at a time: after a message's worth of tokens has refilled.
        self.summary_delay_ms = max(1, int(60_000 / self.alerts.max_per_minute))
        self.summary_timer_pending = False
        log.info("%s", describe_alerting(self.alerts))
        settle_after_open()

    def process_element(self, alert: Alert, ctx: KeyedProcessFunction.Context):
        self.counters.in_scope()
        decision = self.policy.decide(alert, self.last_alert_ms.value())
        self.decisions[decision.outcome].inc()
        if decision.send:
            self.last_alert_ms.update(alert.trade_time_ms)
            self.sender.submit(alert, decision.suppressed)
        elif decision.outcome == RATE_LIMITED and not self.summary_timer_pending:
            timers = ctx.timer_service()
            timers.register_processing_time_timer(timers.current_processing_time() + self.summary_delay_ms)
            self.summary_timer_pending = True
        self._report_delivery()

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        self.summary_timer_pending = False
        summary = self.policy.take_summary()
        if summary is not None:
            self.sender.submit_summary(summary)
        elif self.policy.pending_suppressed:
            timers = ctx.timer_service()
            timers.register_processing_time_timer(timers.current_processing_time() + self.summary_delay_ms)
            self.summary_timer_pending = True
        self._report_delivery()
        yield from ()  # PyFlink iterates what on_timer returns; the sink emits nothing

    def close(self):
        sender = getattr(self, "sender", None)
        if sender is None:
            return
        # The last word on suppressed alerts goes out even past the rate limit: never silently lost.
        summary = self.policy.take_summary(force=True)
        if summary is not None:
            sender.submit_summary(summary)
        sender.close()
        self._report_delivery()
        self.sender = None

    def _report_delivery(self) -> None:
        """Moves the sender thread's counts into Flink counters (which belong to this thread)."""
        stats = self.sender.stats()
        for name, counter in self.delivery.items():
            total = sum(v for k, v in stats.items() if k == name or k.endswith("_" + name))
            if total > self.reported[name]:
                counter.inc(total - self.reported[name])
                self.reported[name] = total
