"""OperatorCounters against Beam's own metrics plumbing, as a PyFlink Python worker runs it: a
state sampler whose operator state carries the operator's metrics container. A processing-time
timer runs outside that state (Beam's process_timer), where no container is current."""

import pytest
from apache_beam.metrics.execution import MetricsContainer
from apache_beam.runners.worker import statesampler
from apache_beam.utils.counters import CounterFactory
from pyflink.fn_execution.metrics.process.metric_impl import GenericMetricGroup

from flink_jobs.counters import OperatorCounters, TimerSafeCounter


class Worker:
    """One operator in a running worker: `operator_scope()` is where its process_element runs;
    code outside it runs as a processing-time timer does."""

    def __init__(self):
        self.sampler = statesampler.StateSampler("stage", CounterFactory())
        self.container = MetricsContainer("features-and-scoring")
        self.metrics = GenericMetricGroup(None, None)

    def operator_scope(self, step: str = "features-and-scoring"):
        return self.sampler.scoped_state(step, "process", metrics_container=self.container)

    def reported(self, counter) -> int:
        """What the operator's container holds for the counter: what it reports when the bundle ends."""
        return reported(self.container, counter)


def reported(container: MetricsContainer, counter) -> int:
    name = counter.metric_name if isinstance(counter, TimerSafeCounter) else counter._inner_counter.metric_name
    return container.get_counter(name).get_cumulative()


@pytest.fixture
def worker():
    running = Worker()
    running.sampler.start()
    yield running
    running.sampler.stop()


def test_pyflinks_own_counter_drops_what_a_timer_counts(worker):
    """The defect OperatorCounters exists for. Should PyFlink fix it, this fails, and the
    workaround can go."""
    counter = worker.metrics.counter("rows_written")
    with worker.operator_scope():
        counter.inc(700)
    counter.inc(300)   # a processing-time timer's flush
    assert worker.reported(counter) == 700


def test_a_timers_count_goes_to_the_container_process_element_saw(worker):
    """The scoring operator at a low rate: every flush is a timer's, none is process_element's."""
    counters = OperatorCounters(worker.metrics)
    rows, batches = counters.counter("rows_written"), counters.counter("scoring_batches")
    with worker.operator_scope():
        counters.in_scope()
    rows.inc(300)
    batches.inc()
    rows.inc(5)
    assert (worker.reported(rows), worker.reported(batches)) == (305, 1)


def test_counts_inside_the_scope_still_count(worker):
    counters = OperatorCounters(worker.metrics)
    rows = counters.counter("rows_written")
    with worker.operator_scope():
        rows.inc(700)
        rows.inc()
    assert worker.reported(rows) == 701


def test_a_count_before_the_operators_first_record_waits_for_it(worker):
    """A restored timer can fire before this process has run the operator's process_element."""
    counters = OperatorCounters(worker.metrics)
    rows, restored = counters.counter("rows_written"), counters.counter("restored_unscored_trades")
    rows.inc(40)
    restored.inc(3)
    assert (worker.reported(rows), worker.reported(restored)) == (0, 0)
    with worker.operator_scope():
        counters.in_scope()
    assert (worker.reported(rows), worker.reported(restored)) == (40, 3)
    rows.inc(2)
    assert worker.reported(rows) == 42


def test_counts_follow_the_container_that_is_current(worker):
    """Beam may build the operator anew (a new container): counts go where it reports from."""
    counters = OperatorCounters(worker.metrics)
    rows = counters.counter("rows_written")
    with worker.operator_scope():
        rows.inc(5)
    first, worker.container = worker.container, MetricsContainer("features-and-scoring")
    with worker.operator_scope("features-and-scoring, rebuilt"):
        counters.in_scope()
    rows.inc(7)
    assert (reported(first, rows), worker.reported(rows)) == (5, 7)


class JvmCounter:
    """A counter that is not Beam's (PyFlink's 'thread' mode counts in the JVM)."""

    def __init__(self):
        self.count = 0

    def inc(self, n=1):
        self.count += n


class JvmMetricGroup:
    def __init__(self):
        self.made = {}

    def counter(self, name):
        return self.made.setdefault(name, JvmCounter())


def test_a_counter_that_is_not_beams_counts_directly():
    group = JvmMetricGroup()
    rows = OperatorCounters(group).counter("rows_written")
    rows.inc(300)
    rows.inc()
    assert group.made["rows_written"].count == 301
