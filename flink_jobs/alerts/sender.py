"""Delivery off the record path: a bounded queue and one sender thread.

The Flink operator only calls submit(), which never waits: an alert that finds the queue full is
dropped, counted and logged (with symbol, method and trade id). The thread sends each message to
every channel with deliver()'s retries. close() lets the queue drain for at most close_timeout_s;
whatever is still queued then is counted as dropped and logged, and a request in flight is cut
by its own timeout. Counts are kept here (the thread is not Flink's) and read with stats().
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from typing import Callable, NamedTuple

from flink_jobs.alerts.channels import RetryPolicy, deliver, redact
from flink_jobs.alerts.message import Alert, Suppressed

log = logging.getLogger(__name__)
_STOP = object()


class Outgoing(NamedTuple):
    alert: Alert | None          # None for a summary of suppressed alerts
    suppressed: Suppressed | None

    def describe(self) -> str:
        if self.alert is None:
            return f"summary of {self.suppressed.count} suppressed alerts"
        a = self.alert
        return f"alert {a.symbol} {a.method} {a.severity} trade {a.trade_id}"


class AlertSender:
    def __init__(self, channels: list, retry: RetryPolicy, queue_size: int, close_timeout_s: float, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] | None = None):
        self.channels, self.retry = channels, retry
        self.queue_size, self.close_timeout_s = queue_size, close_timeout_s
        self.clock = clock
        self._wakeup = threading.Event()
        self.closing = threading.Event()  # set once close() has fixed the deadline
        self.sleep = sleep or self._interruptible_sleep
        self._queue: queue.Queue = queue.Queue()  # bounded by submit(), so that close() can always enqueue _STOP
        self._close_deadline = float("inf")
        self._counts: Counter = Counter()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)
        self._thread.start()

    # -- the caller's side (the Flink operator's thread) --------------------------------------
    def submit(self, alert: Alert, suppressed: Suppressed | None = None) -> bool:
        return self._enqueue(Outgoing(alert, suppressed))

    def submit_summary(self, suppressed: Suppressed) -> bool:
        return self._enqueue(Outgoing(None, suppressed))

    def close(self) -> dict:
        """Drains the queue within close_timeout_s, stops the thread, and returns the counts."""
        self._close_deadline = self.clock() + self.close_timeout_s
        self.closing.set()
        self._queue.put(_STOP)
        self._wakeup.set()  # a retry wait that would end after the deadline gives up now
        # Safety net in wall time: a request in flight ends within its own timeout.
        self._thread.join(self.close_timeout_s + self.retry.http_timeout_s + 5)
        if self._thread.is_alive():
            log.error("alert sender did not stop in time; %d queued alerts are lost", self._queue.qsize())
            self._count("dropped", self._queue.qsize())
        stats = self.stats()
        log.info("alerts: %s", ", ".join(f"{k} {v}" for k, v in sorted(stats.items())) or "none sent")
        return stats

    def stats(self) -> dict:
        with self._lock:
            return dict(self._counts)

    def _enqueue(self, item: Outgoing) -> bool:
        if self._queue.qsize() >= self.queue_size:
            self._count("dropped")
            log.error("%s dropped: the alert queue is full (%d); the channels are too slow or down",
                      item.describe(), self.queue_size)
            return False
        self._count("queued")
        self._queue.put(item)
        return True

    # -- the sender thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self.clock() >= self._close_deadline:
                self._count("dropped")
                log.error("%s dropped: the job stopped before it could be sent", item.describe())
                continue
            for channel in self.channels:
                self._send(channel, item)

    def _send(self, channel, item: Outgoing) -> None:
        try:
            payload = (channel.render(item.alert, item.suppressed) if item.alert is not None
                       else channel.render_summary(item.suppressed))
            result = deliver(channel, payload, self.retry, clock=self.clock, sleep=self.sleep,
                             give_up_at=lambda: self._close_deadline)
        except Exception as error:  # noqa: BLE001 - a bug must not kill the thread and silence every later alert
            self._count(f"{channel.name}_failed")
            # No traceback: exception texts from deep in urllib can quote the URL, and the URL is a secret.
            log.error("%s to %s failed unexpectedly: %s", item.describe(), channel.name,
                      redact(f"{type(error).__name__}: {error}", channel.secrets))
            return
        if result.delivered:
            self._count(f"{channel.name}_sent")
            if result.attempts > 1:
                log.info("%s sent to %s after %d attempts", item.describe(), channel.name, result.attempts)
        else:
            self._count(f"{channel.name}_failed")
            log.error("%s to %s failed: %s", item.describe(), channel.name, result.detail)

    def _interruptible_sleep(self, seconds: float) -> None:
        # close() sets the event so a long retry wait re-checks the shutdown deadline at once.
        self._wakeup.wait(seconds)
        self._wakeup.clear()

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n
