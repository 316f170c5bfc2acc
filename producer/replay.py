"""Replay of recorded trades into Kafka, at recorded speed, N times faster, at a fixed number of
trades per second, or as fast as possible; a symbol's trades within KAFKA_MESSAGE_LINGER_MS of
each other (wall time) share a batch message, as the live producer's (producer/batching.py)."""
from __future__ import annotations

import heapq
import logging
import time
from typing import Iterable, Iterator

from producer.batching import Batch, MessageBatcher, may_share
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

    def wait_for(self, time_ms: int, sleep=None) -> None:
        if self.speed is None:
            return
        if self.first_record_ms is None:
            self.first_record_ms, self.started = time_ms, time.monotonic()
            return
        due = self.started + (time_ms - self.first_record_ms) / 1000.0 / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            (sleep or time.sleep)(delay)


class RatePacer:
    """Sleeps so that records leave at `rate` per second of wall time, whatever their trade times:
    inputs whose times do not make a usable pace (files of different days interleaved), and a
    steady stream to disturb while it flows (docs/reliability.md)."""

    def __init__(self, rate: float):
        self.interval_s = 1.0 / rate
        self.sent = 0
        self.started = 0.0

    def wait_for(self, time_ms: int, sleep=None) -> None:
        if self.sent == 0:
            self.started = time.monotonic()
        delay = self.started + self.sent * self.interval_s - time.monotonic()
        self.sent += 1
        if delay > 0:
            (sleep or time.sleep)(delay)


def replay(records: Iterable[Record], publisher: Publisher, speed: float | None,
           progress_every_s: float = 5.0, rate: float | None = None,
           batcher: MessageBatcher | None = None) -> int:
    """Publishes every record, paced by `rate` (trades per second) when given, else by `speed`,
    through `batcher` (default: one trade per message); logs progress; returns how many records
    were handed to the producer. Only valid trades of the record's symbol share messages: anything
    else in a recording is published alone as it came, for the job to judge (and dead-letter) alone.
    Waiting batches leave when due, also while the pacer waits for the next record, and all that
    wait leave when the replay ends or is interrupted."""
    pacer = RatePacer(rate) if rate else Pacer(speed)
    batcher = batcher or MessageBatcher(1, 0.0)
    count = 0
    started = last_report = time.monotonic()

    def send(batches: list[Batch]) -> None:
        for batch in batches:
            publisher.send(batch.symbol, batch.value, trades=len(batch.tags))

    def sleep_sending_due(seconds: float) -> None:
        """The pacer's sleep, cut at each batch's linger so that none waits for the next record."""
        until = time.monotonic() + seconds
        while True:
            left = until - time.monotonic()
            due_in = batcher.next_due_in()
            if left <= 0:
                return
            time.sleep(left if due_in is None else min(left, due_in))
            send(batcher.due())

    try:
        for record in records:
            send(batcher.due())
            pacer.wait_for(record.time_ms, sleep=sleep_sending_due)
            message = record.message.encode("utf-8") if isinstance(record.message, str) else record.message
            if batcher.batching and may_share(record.message, record.symbol):
                send(batcher.add(record.symbol, message))
            else:
                send(batcher.alone(record.symbol, message))
            count += 1
            now = time.monotonic()
            if now - last_report >= progress_every_s:
                log.info("replayed %d trades (%.0f/s) in %d messages, %d acknowledged", count,
                         count / (now - started), publisher.messages, publisher.acked)
                last_report = now
    finally:
        send(batcher.drain())
    return count
