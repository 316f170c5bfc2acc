"""Benchmark input: trade messages for any number of symbols, sent as fast as possible or paced.

Trades are synthetic but shaped like the market (a random walk per symbol with lognormal sizes
and both sides), because the benchmark needs many symbols, fixed rates and send-time stamps that
recordings cannot give. Messages are the Binance websocket shape the job parses
(flink_jobs.trades.to_message), keyed by symbol like the producer's, one trade each or, as the
producer batches them (KAFKA_MESSAGE_TRADES, KAFKA_MESSAGE_LINGER_MS; docs/producer.md), a symbol's
trades of one linger window per batch message.

Paced sending stamps each trade with the moment it is handed to the Kafka client: event time
(E) and trade time (T) are both that instant in ms, so `ingested_at - event_time` in the store
is the end-to-end latency of the row, and the watermark follows the wall clock as it does live.
"""
from __future__ import annotations

import math
import random
import time
from typing import Iterator

from flink_jobs.trades import Trade, encode_message
from producer.batching import batch_messages

BASE_PRICE = {"BTC": 27_000.0, "ETH": 1_800.0, "BNB": 300.0, "SOL": 20.0, "XRP": 0.45}
FIRST_ID = 1_000_000


def symbol_names(count: int) -> list[str]:
    """The five default pairs first, then made-up ones (S0005USDT, ...) to reach `count`."""
    names = [f"{base}USDT" for base in BASE_PRICE][:count]
    names += [f"S{i:04d}USDT" for i in range(len(names), count)]
    return names


class Market:
    """Per symbol: next trade id and a random-walk price; `spike` plants a one-trade jump."""

    def __init__(self, symbols: list[str], seed: int = 7, first_id: int = FIRST_ID):
        self.rng = random.Random(seed)
        self.symbols = symbols
        self.price = {s: BASE_PRICE.get(s[:-4], 10.0 + (i % 90)) for i, s in enumerate(symbols)}
        self.next_id = {s: first_id for s in symbols}

    def trade(self, symbol: str, time_ms: int, spike_pct: float = 0.0) -> Trade:
        price = self.price[symbol] * math.exp(self.rng.gauss(0.0, 0.0002))
        self.price[symbol] = price
        if spike_pct:
            price *= 1 + spike_pct / 100  # one trade away from the walk, which carries on unmoved
        qty = round(math.exp(self.rng.gauss(-3.0, 1.2)), 6) or 0.000001
        trade_id = self.next_id[symbol]
        self.next_id[symbol] = trade_id + 1
        return Trade(symbol, trade_id, round(price, 8), qty, time_ms, time_ms, self.rng.random() < 0.5)


def encode(trade: Trade) -> bytes:
    return encode_message(trade)


def trades_per_message(rate: float, symbols: int, linger_ms: float, max_trades: int) -> int:
    """How many trades of a symbol a batching producer puts in one message at `rate` trades/s
    spread over `symbols` symbols: those of one linger window, at least 1, at most max_trades."""
    return max(1, min(max_trades, int(rate * linger_ms / 1000 / symbols)))


def bulk_trades(symbols: list[str], count: int, start_ms: int, per_second: int = 2_000,
                seed: int = 7) -> Iterator[Trade]:
    """`count` trades round-robin over the symbols, trade time advancing at `per_second`."""
    market = Market(symbols, seed)
    for i in range(count):
        yield market.trade(symbols[i % len(symbols)], start_ms + i * 1000 // per_second)


def send_bulk(producer, topic: str, trades: Iterator[Trade], progress=None,
              per_message: int = 1) -> tuple[int, float]:
    """Sends everything as fast as the client takes it, `per_message` trades of a symbol per
    message; returns (trade count, seconds until all acked)."""
    started = time.monotonic()
    count = 0
    pending: dict[str, list] = {}

    def send(symbol: str, batch: list) -> None:
        for value in batch_messages(batch, per_message):
            producer.send(topic, key=symbol.encode(), value=value)

    for trade in trades:
        batch = pending.setdefault(trade.symbol, [])
        batch.append(trade)
        if len(batch) >= per_message:
            send(trade.symbol, pending.pop(trade.symbol))
        count += 1
        if progress and count % 100_000 == 0:
            progress(count, time.monotonic() - started)
    for symbol, batch in pending.items():
        send(symbol, batch)
    producer.flush()
    return count, time.monotonic() - started


class PacedRun:
    """Sends `rate` trades per second for `seconds`, round-robin over the market's symbols, in
    10 ms ticks, with trade ids from `first_id` (the prices carry on from the market's last run);
    every `spike_every_s` one trade of the next symbol is a planted `spike_pct` jump. Records
    which trade ids were planted, and how many trades actually left per second. With
    `message_trades` above 1, a symbol's trades of one tick leave as batch messages of at most that
    many, at the next tick: a producer lingering one tick (KAFKA_MESSAGE_LINGER_MS, 10 ms), each
    trade held the whole linger, as only the first of a window is in the producers."""

    TICK_S = 0.01

    def __init__(self, market: Market, rate: int, seconds: float, first_id: int, spike_every_s: float = 5.0,
                 spike_pct: float = 3.0, message_trades: int = 1):
        self.market, self.rate, self.seconds = market, rate, seconds
        self.message_trades = message_trades
        self.spike_every_s, self.spike_pct = spike_every_s, spike_pct
        self.first_id = first_id
        self.planted: list[tuple[str, int]] = []
        self.planted_ms: list[int] = []  # each planted trade's send time
        self.sent = 0
        self.elapsed = 0.0

    def run(self, producer, topic: str) -> None:
        symbols = self.market.symbols
        for symbol in symbols:
            self.market.next_id[symbol] = self.first_id
        started = time.monotonic()
        next_spike = started + self.spike_every_s
        turn = 0
        ticks = int(self.seconds / self.TICK_S)
        lingering: dict[str, list] = {}   # the last tick's trades per symbol, when batching
        for tick in range(ticks):
            due = started + tick * self.TICK_S
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            lingering = self._send_batches(producer, topic, lingering)
            # Whole trades per tick, the remainder carried so that the long-run rate is exact.
            n = int((tick + 1) * self.rate * self.TICK_S) - int(tick * self.rate * self.TICK_S)
            for _ in range(n):
                symbol = symbols[turn % len(symbols)]
                turn += 1
                spike = 0.0
                if time.monotonic() >= next_spike:
                    spike, next_spike = self.spike_pct, next_spike + self.spike_every_s
                trade = self.market.trade(symbol, int(time.time() * 1000), spike)
                if spike:
                    self.planted.append((trade.symbol, trade.trade_id))
                    self.planted_ms.append(trade.event_time_ms)
                if self.message_trades > 1:
                    lingering.setdefault(symbol, []).append(trade)
                else:
                    producer.send(topic, key=symbol.encode(), value=encode(trade))
                self.sent += 1
        delay = started + ticks * self.TICK_S - time.monotonic()
        if lingering and delay > 0:
            time.sleep(delay)   # the last tick's batches linger like the others
        self._send_batches(producer, topic, lingering)
        producer.flush()
        self.elapsed = time.monotonic() - started

    def _send_batches(self, producer, topic: str, lingering: dict) -> dict:
        for symbol, trades in lingering.items():
            for value in batch_messages(trades, self.message_trades):
                producer.send(topic, key=symbol.encode(), value=value)
        return {}

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed else 0.0
