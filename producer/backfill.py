"""The backfill thread: fetches each gap's trades from REST and hands them to the Sequencer.

One thread, so REST calls never block a websocket thread, and Binance's REST weight limit sees
one request at a time. A gap that cannot be fetched after a few attempts is released unfilled:
the held trades go out and the gap record says so.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from producer.binance_rest import BinanceRest, RestError
from producer.gaps import Gap

log = logging.getLogger(__name__)


class Backfiller(threading.Thread):
    def __init__(self, rest: BinanceRest, on_done: Callable[[Gap, list | None, str], None],
                 attempts: int = 3, retry_delay_s: float = 0.5, max_pending: int = 10_000):
        super().__init__(name="backfill", daemon=True)
        self.rest = rest
        self.on_done = on_done          # (gap, trades or None, error text)
        self.attempts = attempts
        self.retry_delay_s = retry_delay_s
        self.pending: queue.Queue = queue.Queue(max_pending)
        self.stopping = threading.Event()

    def submit(self, gap: Gap) -> bool:
        try:
            self.pending.put_nowait(gap)
            return True
        except queue.Full:
            return False

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                gap = self.pending.get(timeout=0.2)
            except queue.Empty:
                continue
            trades, error = self._fetch(gap)
            self.on_done(gap, trades, error)

    def _fetch(self, gap: Gap) -> tuple[list | None, str]:
        error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                return self.rest.trades_between(gap.symbol, gap.first_id, gap.last_id), ""
            except (RestError, KeyError, TypeError, ValueError) as failure:
                error = str(failure)
                log.warning("backfill symbol=%s ids=%d..%d attempt=%d failed: %s", gap.symbol, gap.first_id,
                            gap.last_id, attempt, error)
                if self.stopping.wait(self.retry_delay_s * attempt):
                    break
        return None, error

    def stop(self) -> None:
        self.stopping.set()
