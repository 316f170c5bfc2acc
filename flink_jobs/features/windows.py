"""Small rolling structures over the last N trades (or the last T milliseconds), O(1) or O(N) with
tiny N, picklable as plain tuples. RollingStats (rolling.py) covers mean and standard deviation.

The job's features run these updates compiled, operation by operation (features/kernel.py); the
classes are the interpreted definitions, and what savepoints of earlier versions hold
(symbol_state._load_interpreted_layout)."""
from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque


class RollingSum:
    """Sum of the last N values; recomputed exactly every N updates so subtraction error cannot pile up."""
    __slots__ = ("capacity", "values", "total", "updates")

    def __init__(self, capacity: int):
        self.capacity, self.values, self.total, self.updates = capacity, deque(maxlen=capacity), 0.0, 0

    def push(self, x: float) -> None:
        if len(self.values) == self.capacity:
            self.total -= self.values[0]
        self.values.append(x)
        self.total += x
        self.updates += 1
        if self.updates >= self.capacity:
            self.total, self.updates = float(sum(self.values)), 0

    def __len__(self) -> int:
        return len(self.values)

    def __getstate__(self):
        return self.capacity, list(self.values), self.total, self.updates

    def __setstate__(self, state):
        self.capacity, values, self.total, self.updates = state
        self.values = deque(values, maxlen=self.capacity)


class RollingMedian:
    """The last N values (N small: 50 sizes, 100 log sizes) and their order statistics.

    A sorted copy is kept beside the window, updated by bisection as values come and go: the
    median and the quantiles of a trade's features read it instead of sorting N values per trade
    (which was about a tenth of the scoring operator's time; docs/performance.md). It is rebuilt,
    not stored, when the state is loaded."""
    __slots__ = ("values", "ordered")

    def __init__(self, capacity: int):
        self.values = deque(maxlen=capacity)
        self.ordered: list[float] = []

    def push(self, x: float) -> None:
        if len(self.values) == self.values.maxlen:
            del self.ordered[bisect_left(self.ordered, self.values[0])]
        self.values.append(x)
        insort(self.ordered, x)

    @property
    def median(self) -> float:
        ordered = self.ordered
        n = len(ordered)
        if n == 0:
            return 0.0
        mid = n // 2
        return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])

    def __len__(self) -> int:
        return len(self.values)

    def __getstate__(self):
        return self.values.maxlen, list(self.values)

    def __setstate__(self, state):
        capacity, values = state
        self.values = deque(values, maxlen=capacity)
        self.ordered = sorted(self.values)


class EventsInLast:
    """How many events fell in the trailing `span_ms` of event time (this one included)."""
    __slots__ = ("span_ms", "times")

    def __init__(self, span_ms: int):
        self.span_ms, self.times = span_ms, deque()

    def add(self, time_ms: int) -> int:
        self.times.append(time_ms)
        horizon = time_ms - self.span_ms
        while self.times and self.times[0] <= horizon:
            self.times.popleft()
        return len(self.times)

    def __getstate__(self):
        return self.span_ms, list(self.times)

    def __setstate__(self, state):
        self.span_ms, times = state
        self.times = deque(times)


class DecayingRate:
    """Events per second, weighted exponentially in *time* with time constant `tau_s`.

    An EWMA updated per event (Ewma) follows a burst within the burst itself: 80 trades in one
    second move it by 80 updates. Weighted by time, those 80 trades join about a minute's worth
    of earlier trades (tau 60 s at 1.5 trades/s: ~90), so the burst stands out against what came
    before it instead of becoming its own baseline.
    """
    __slots__ = ("tau_ms", "level", "first_ms", "last_ms")

    def __init__(self, tau_s: float):
        self.tau_ms, self.level, self.first_ms, self.last_ms = tau_s * 1000.0, 0.0, None, None

    def per_second(self, now_ms: int) -> float | None:
        """The rate up to `now_ms` (before an event at `now_ms` is added); None without history.
        Corrected for warm-up: with history shorter than tau the decayed count is divided by the
        weight that history actually has, not by tau."""
        if self.first_ms is None or now_ms <= self.first_ms:
            return None
        decayed = self.level * math.exp(-max(now_ms - self.last_ms, 0) / self.tau_ms)
        weight = self.tau_ms * -math.expm1(-(now_ms - self.first_ms) / self.tau_ms)
        return decayed / weight * 1000.0

    def per_second_at_last_event(self) -> float | None:
        """The rate as it stood at the last event, before any silence since: the pace a market had
        when it went quiet."""
        return None if self.last_ms is None else self.per_second(self.last_ms)

    def add(self, now_ms: int) -> None:
        if self.first_ms is None:
            self.first_ms = self.last_ms = now_ms
        self.level = self.level * math.exp(-max(now_ms - self.last_ms, 0) / self.tau_ms) + 1.0
        self.last_ms = max(self.last_ms, now_ms)

    def __getstate__(self):
        return self.tau_ms, self.level, self.first_ms, self.last_ms

    def __setstate__(self, state):
        self.tau_ms, self.level, self.first_ms, self.last_ms = state


class Ewma:
    """Exponentially weighted moving average; `value` is None until the first update."""
    __slots__ = ("alpha", "value")

    def __init__(self, alpha: float):
        self.alpha, self.value = alpha, None

    def update(self, x: float) -> float:
        self.value = x if self.value is None else self.value + self.alpha * (x - self.value)
        return self.value

    def __getstate__(self):
        return self.alpha, self.value

    def __setstate__(self, state):
        self.alpha, self.value = state
