"""Known anomaly events planted into clean trade streams, with their ground truth.

Kinds (each seeded, each at a random trade index, events of a symbol at least `spacing_s` apart):
- spike:        one trade 1-3% away from the market, the next trades back at the market
- flash_crash:  10 trades within 2 s falling 3-6%, then 10 trades recovering
- pump_dump:    60 trades ramping up 4-8% at 5x size, then 10 trades dumping back
- volume_spike: one trade 30-100x the median size at the market price
- trade_burst:  80 extra trades within one second at the market price
Trade ids are renumbered per symbol afterwards (inserted trades need ids), times stay sorted.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from flink_jobs.trades import Trade

KINDS = ("spike", "flash_crash", "pump_dump", "volume_spike", "trade_burst")


@dataclass(frozen=True)
class Event:
    symbol: str
    kind: str
    start_ms: int
    end_ms: int


def _scaled(trades, start, factors, size_factor=1.0):
    for offset, factor in enumerate(factors):
        t = trades[start + offset]
        trades[start + offset] = t._replace(price=t.price * factor, qty=t.qty * size_factor)


def plant(trades: list[Trade], kind: str, index: int, rng: random.Random) -> tuple[list[Trade], Event]:
    """A copy of one symbol's trades with one event of `kind` starting at `index`."""
    trades = list(trades)
    symbol, start_ms = trades[index].symbol, trades[index].trade_time_ms
    if kind == "spike":
        sign = rng.choice((-1, 1))
        _scaled(trades, index, [1 + sign * rng.uniform(0.01, 0.03)])
        end = index
    elif kind == "flash_crash":
        depth = rng.uniform(0.03, 0.06)
        path = [1 - depth * (i + 1) / 10 for i in range(10)] + [1 - depth * (1 - (i + 1) / 10) for i in range(10)]
        # squeeze the 20 trades into 2 s so the crash is flash
        base = trades[index].trade_time_ms
        for i in range(20):
            t = trades[index + i]
            trades[index + i] = t._replace(trade_time_ms=base + i * 100, event_time_ms=base + i * 100)
        _scaled(trades, index, path)
        following = trades[index + 20].trade_time_ms
        if following < base + 2000:  # keep times sorted after the squeeze
            for j in range(index + 20, len(trades)):
                if trades[j].trade_time_ms >= base + 2000:
                    break
                trades[j] = trades[j]._replace(trade_time_ms=base + 2000, event_time_ms=base + 2000)
        end = index + 19
    elif kind == "pump_dump":
        height = rng.uniform(0.04, 0.08)
        path = [1 + height * (i + 1) / 60 for i in range(60)] + [1 + height * (1 - (i + 1) / 10) for i in range(10)]
        _scaled(trades, index, path, size_factor=5.0)
        end = index + 69
    elif kind == "volume_spike":
        _scaled(trades, index, [1.0], size_factor=rng.uniform(30, 100))
        end = index
    elif kind == "trade_burst":
        anchor = trades[index]
        burst = [anchor._replace(price=anchor.price * (1 + rng.gauss(0, 0.0001)),
                                 trade_time_ms=anchor.trade_time_ms + int(i * 1000 / 80),
                                 event_time_ms=anchor.trade_time_ms + int(i * 1000 / 80),
                                 is_buyer_maker=rng.random() < 0.5)
                 for i in range(80)]
        last = burst[-1].trade_time_ms
        rest = [t if t.trade_time_ms >= last else t._replace(trade_time_ms=last, event_time_ms=last)
                for t in trades[index + 1:]]
        trades = trades[:index + 1] + burst + rest
        return _renumber(trades), Event(symbol, kind, start_ms, last)
    else:
        raise ValueError(f"unknown kind {kind}")
    return _renumber(trades), Event(symbol, kind, start_ms, trades[end].trade_time_ms)


def _renumber(trades: list[Trade]) -> list[Trade]:
    first = trades[0].trade_id
    return [t._replace(trade_id=first + i) for i, t in enumerate(trades)]


def plant_events(trades: list[Trade], kind: str, every_s: float, seed: int, warmup: int = 1200):
    """One symbol's trades with an event of `kind` about every `every_s` seconds after a warm-up."""
    rng = random.Random(seed)
    events = []
    index = warmup
    while True:
        target_ms = trades[index].trade_time_ms + int(every_s * 1000 * rng.uniform(0.8, 1.2))
        index = next((i for i in range(index + 1, len(trades)) if trades[i].trade_time_ms >= target_ms), None)
        if index is None or index + 200 >= len(trades):
            return trades, events
        trades, event = plant(trades, kind, index, rng)
        events.append(event)
        index += 100
