"""Replay of recorded trades into Kafka, at recorded speed, N times faster, at a fixed number of
messages per second, or as fast as possible."""
from __future__ import annotations

import heapq
import logging
import time
from typing import Iterable, Iterator

from producer.publisher import Publisher
from producer.sources import Record, read_any

log = logging.getLogger(__name__)


def merged_records(paths: list[str], symbol: str | None = None) -> Iterator[Record]:
    """All files' records in trade-time order (each file is already in time order)."""
    return heapq.merge(*(read_any(path, symbol) for path in paths), key=lambda record: record.time_ms)


class Pacer:
    """Sleeps so that records leave at `speed` times their recorded pace (None: no sleeping)."""

    def __init__(self, speed: float | None):
        self.speed = speed
        self.first_record_ms: int | None = None
        self.started = 0.0

    def wait_for(self, time_ms: int) -> None:
        if self.speed is None:
            return
        if self.first_record_ms is None:
            self.first_record_ms, self.started = time_ms, time.monotonic()
            return
        due = self.started + (time_ms - self.first_record_ms) / 1000.0 / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class RatePacer:
    """Sleeps so that records leave at `rate` per second of wall time, whatever their trade times:
    inputs whose times do not make a usable pace (files of different days interleaved), and a
    steady stream to disturb while it flows (docs/reliability.md)."""

    def __init__(self, rate: float):
        self.interval_s = 1.0 / rate
        self.sent = 0
        self.started = 0.0

    def wait_for(self, time_ms: int) -> None:
        if self.sent == 0:
            self.started = time.monotonic()
        delay = self.started + self.sent * self.interval_s - time.monotonic()
        self.sent += 1
        if delay > 0:
            time.sleep(delay)


def replay(records: Iterable[Record], publisher: Publisher, speed: float | None,
           progress_every_s: float = 5.0, rate: float | None = None) -> int:
    """Publishes every record, paced by `rate` (messages per second) when given, else by `speed`;
    logs progress; returns how many were handed to the producer."""
    pacer = RatePacer(rate) if rate else Pacer(speed)
    count = 0
    started = last_report = time.monotonic()
    for record in records:
        pacer.wait_for(record.time_ms)
        publisher.send(record.symbol, record.message)
        count += 1
        now = time.monotonic()
        if now - last_report >= progress_every_s:
            log.info("replayed %d messages (%.0f/s), %d acknowledged", count, count / (now - started),
                     publisher.acked)
            last_report = now
    return count
