"""Per-symbol trade-id sequencing of the live stream: duplicates dropped, gaps found, order kept.

Binance trade ids rise by exactly one per trade of a symbol, so the stream itself says what is
missing. For each symbol the Sequencer remembers only the last id it let through and the gaps it
is waiting to have backfilled, which bounds its memory:

- an id above the last one is new; if it skips ids, the skipped range is a Gap;
- an id at or below the last one is a duplicate (a reconnect overlap, a repeated frame) unless it
  falls into a gap still open, and is dropped;
- while a symbol has open gaps its live trades are held back, so that the backfilled trades and
  the held ones reach Kafka in id order: the Flink job treats an id below the last one it saw as a
  repeat. A hold is bounded (LIVE_BACKFILL_HOLD_MAX); beyond it the backfill is abandoned and the
  held trades go out, leaving the gap recorded as unfilled.

Thread-safe: websocket threads and the backfill thread call it concurrently.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple


class Gap(NamedTuple):
    symbol: str
    first_id: int          # first missing trade id
    last_id: int           # last missing trade id (inclusive)
    connection: str
    detected_at_ms: int

    @property
    def missing(self) -> int:
        return self.last_id - self.first_id + 1

    def record(self, status: str, **extra) -> dict:
        """The JSON record of the gap for the gaps topic; status: open, filled, partial, unfilled, abandoned."""
        return {"symbol": self.symbol, "first_id": self.first_id, "last_id": self.last_id,
                "missing": self.missing, "connection": self.connection, "detected_at": self.detected_at_ms,
                "status": status, **extra}


class Out(NamedTuple):
    symbol: str
    trade_id: int
    message: str


@dataclass
class Decision:
    """What to do with one live trade: publish these (maybe none while held), and a gap if one opened."""
    publish: list = field(default_factory=list)
    gap: Gap | None = None
    backfill: bool = False      # whether the gap was opened for backfill (else recorded as unfilled)
    duplicate: bool = False
    abandoned: list = field(default_factory=list)   # gaps given up because the hold overflowed


@dataclass
class _Symbol:
    last_id: int | None = None
    open_gaps: list = field(default_factory=list)
    held: dict = field(default_factory=dict)        # trade id -> Out, while open_gaps


class Sequencer:
    def __init__(self, backfill: bool, backfill_max_trades: int, hold_max: int, clock=time.time):
        self.backfill = backfill
        self.backfill_max_trades = backfill_max_trades
        self.hold_max = hold_max
        self.clock = clock
        self._symbols: dict[str, _Symbol] = {}
        self._lock = threading.Lock()

    def on_trade(self, symbol: str, trade_id: int, message: str, connection: str = "") -> Decision:
        out = Out(symbol, trade_id, message)
        with self._lock:
            state = self._symbols.setdefault(symbol, _Symbol())
            decision = Decision()
            if state.last_id is not None and trade_id <= state.last_id:
                if self._in_open_gap(state, trade_id) and trade_id not in state.held:
                    state.held[trade_id] = out   # a late id of a gap: keep it, the backfill will skip it
                else:
                    decision.duplicate = True
                return decision
            if state.last_id is not None and trade_id > state.last_id + 1:
                decision.gap = Gap(symbol, state.last_id + 1, trade_id - 1, connection, int(self.clock() * 1000))
                decision.backfill = self.backfill and decision.gap.missing <= self.backfill_max_trades
                if decision.backfill:
                    state.open_gaps.append(decision.gap)
            state.last_id = trade_id
            if state.open_gaps:
                state.held[trade_id] = out
                if len(state.held) > self.hold_max:
                    decision.abandoned = list(state.open_gaps)
                    decision.publish = self._release(state)
            else:
                decision.publish = [out]
            return decision

    def on_backfill(self, gap: Gap, trades: list[Out]) -> tuple[list[Out], int] | None:
        """Adds a gap's backfilled trades; returns (what to publish now, how many filled the gap), or
        None when the gap was abandoned meanwhile (its trades would arrive out of order: dropped)."""
        with self._lock:
            state = self._symbols[gap.symbol]
            if gap not in state.open_gaps:
                return None
            filled = 0
            for trade in trades:
                if gap.first_id <= trade.trade_id <= gap.last_id and trade.trade_id not in state.held:
                    state.held[trade.trade_id] = trade
                    filled += 1
            state.open_gaps.remove(gap)
            return (self._release(state) if not state.open_gaps else []), filled

    def release_all(self) -> tuple[list[Out], list[Gap]]:
        """At shutdown: every held trade in id order, and the gaps given up."""
        with self._lock:
            published, abandoned = [], []
            for state in self._symbols.values():
                abandoned.extend(state.open_gaps)
                published.extend(self._release(state))
            return published, abandoned

    def held_count(self) -> int:
        with self._lock:
            return sum(len(s.held) for s in self._symbols.values())

    def last_ids(self) -> dict[str, int]:
        with self._lock:
            return {symbol: s.last_id for symbol, s in self._symbols.items()}

    @staticmethod
    def _in_open_gap(state: _Symbol, trade_id: int) -> bool:
        return any(g.first_id <= trade_id <= g.last_id for g in state.open_gaps)

    @staticmethod
    def _release(state: _Symbol) -> list[Out]:
        released = [state.held[i] for i in sorted(state.held)]
        state.held.clear()
        state.open_gaps.clear()
        return released
