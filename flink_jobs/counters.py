"""Flink counters for Python operators with processing-time timers, that count in the timers too.

A PyFlink counter (`metric_group.counter(name)`) adds to the metrics container of the Beam step
that is running when `inc` is called. PyFlink 2.2 runs an operator's processing-time timers from
Beam's `process_timer`, outside the operator's metrics scope: no container is current there, and
the increment is dropped without a word. Every count made in such an `on_timer` was lost: rows
the scoring operator and the store sink write when their flush timer fires, batches scored then,
alert deliveries reported then. It showed as `rows_written` stuck while the store kept filling
(docs/reliability.md, "Counters").

`OperatorCounters` keeps the operator's container from the calls made inside its scope: each
`process_element` calls `in_scope()` first. A timer's count goes to that container, the one the
operator reports from when the bundle ends, so it shows with that bundle like any other. A timer
that fires before this process has run the operator's `process_element` (a restored timer)
finds no container yet: its count waits for the first call that does.
"""

from __future__ import annotations

from apache_beam.metrics.execution import MetricsEnvironment
from apache_beam.metrics.metric import Metrics

# The metrics container of the Beam step running now, None outside any (a processing-time timer).
_current_container = MetricsEnvironment.current_container


class OperatorCounters:
    """The counters of one operator instance, sharing what they know of its metrics container."""

    def __init__(self, metric_group):
        self.metric_group = metric_group
        self.container = None   # the operator's metrics container, once seen inside its scope
        self.owed: dict = {}    # Beam MetricName -> what was counted before any container was seen

    def counter(self, name: str) -> "TimerSafeCounter":
        return TimerSafeCounter(self, name)

    def in_scope(self) -> bool:
        """Called first in process_element, where the operator's scope is current; also tells
        whether a scope is current now (not in a processing-time timer)."""
        current = _current_container()
        if current is None:
            return False
        self.container = current
        if self.owed:
            self._settle()
        return True

    def add_outside_scope(self, metric_name, n: int) -> None:
        if self.container is None:
            self.owed[metric_name] = self.owed.get(metric_name, 0) + n
        else:
            self.container.get_counter(metric_name).inc(n)

    def _settle(self) -> None:
        for metric_name, n in self.owed.items():
            self.container.get_counter(metric_name).inc(n)
        self.owed = {}


class TimerSafeCounter:
    """One counter of the operator's metric group, with the `inc` of pyflink.metrics.Counter."""

    def __init__(self, counters: OperatorCounters, name: str):
        self.counters = counters
        self.counter = counters.metric_group.counter(name)
        # Beam's MetricName (namespace and name) of a Beam-backed counter: the Python worker as a
        # process. None for one that counts in the JVM directly (PyFlink's 'thread' mode), which
        # needs no help.
        inner = getattr(self.counter, "_inner_counter", None)
        self.metric_name = inner.metric_name if isinstance(inner, Metrics.DelegatingCounter) else None

    def inc(self, n: int = 1) -> None:
        if self.metric_name is None or self.counters.in_scope():
            self.counter.inc(n)
        else:
            self.counters.add_outside_scope(self.metric_name, n)
