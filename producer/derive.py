"""DERIVED trades from real 1-minute candles, for when real ticks are too few (documented method).

For each candle (open_time, open, high, low, close, volume) of a real series:
- trade count follows volume: the candle gets round(total_trades * volume / sum(volume)) trades,
  at least one;
- prices walk a piecewise-linear path from the open through the extremes to the close (through
  the low first on an up candle, through the high first on a down candle), with seeded noise of
  a few basis points, and always stay inside [low, high]; the path touches high and low exactly;
- trade times are uniform inside the minute, sorted; quantities split the candle's volume
  with exponential weights; the taker side follows the price step (down-tick: buyer is maker);
- trade ids are consecutive from `first_id`; `scale` multiplies prices (to put a series at
  another symbol's price level) and divides volumes so quote volume is kept.

Everything comes from numpy's Generator seeded with `seed`, so the same arguments give the same
file. The output is a Binance public-data trades CSV without header. Derived data is labelled
as such wherever it is used.
"""
from __future__ import annotations

import csv
import gzip
from datetime import datetime, timezone
from typing import NamedTuple

import numpy as np


class Candle(NamedTuple):
    open_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


def epoch_ms(text: str) -> int:
    """'2023-03-01 00:00:00+00:00' (UTC when no zone is given) or epoch ms -> epoch ms."""
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def read_candles(path: str, start_ms: int | None = None, end_ms: int | None = None) -> list[Candle]:
    """Candles from a CSV (header open_time,open,high,low,close,volume; .gz allowed) in [start, end)."""
    opener = gzip.open if path.endswith(".gz") else open
    candles = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            t = epoch_ms(row["open_time"])
            if (start_ms is None or t >= start_ms) and (end_ms is None or t < end_ms):
                candles.append(Candle(t, float(row["open"]), float(row["high"]), float(row["low"]),
                                      float(row["close"]), float(row["volume"])))
    return candles


def _path_prices(c: Candle, n: int, rng: np.random.Generator) -> np.ndarray:
    """n prices walking open -> first extreme -> second extreme -> close inside [low, high]."""
    first, second = (c.low, c.high) if c.close >= c.open else (c.high, c.low)
    knots = np.array([c.open, first, second, c.close])
    if n == 1:
        return np.array([c.close])
    positions = np.linspace(0.0, 3.0, n)
    prices = np.interp(positions, np.arange(4), knots)
    noise = rng.normal(0.0, 0.0002, n) * prices
    noise[[0, -1]] = 0.0  # open and close are exact
    prices = np.clip(prices + noise, c.low, c.high)
    if n >= 4:  # the extremes are reached exactly
        prices[int(round((n - 1) / 3))] = first
        prices[int(round(2 * (n - 1) / 3))] = second
    return prices


def derive_trades(candles: list[Candle], total_trades: int, seed: int, first_id: int = 1,
                  scale: float = 1.0) -> list[tuple]:
    """Rows (id, price, qty, quote_qty, time_ms, is_buyer_maker, is_best_match) for the candles."""
    rng = np.random.default_rng(seed)
    volumes = np.array([max(c.volume, 0.0) for c in candles])
    weights = volumes / volumes.sum() if volumes.sum() > 0 else np.full(len(candles), 1 / len(candles))
    counts = np.maximum(1, np.round(weights * total_trades).astype(int))
    rows, trade_id, last_price = [], first_id, None
    for candle, n in zip(candles, counts):
        prices = _path_prices(candle, int(n), rng) * scale
        times = candle.open_time_ms + np.sort(rng.integers(0, 60_000, int(n)))
        volume = max(candle.volume, 1e-6) / scale
        qtys = rng.exponential(1.0, int(n))
        qtys = qtys / qtys.sum() * volume
        for price, qty, t in zip(prices, qtys, times):
            price = float(f"{price:.8g}")
            qty = max(float(f"{qty:.8g}"), 1e-8)
            maker = last_price is not None and price < last_price
            rows.append((trade_id, price, qty, round(price * qty, 8), int(t), maker, True))
            trade_id += 1
            last_price = price
    return rows


def write_binance_csv(rows: list[tuple], path: str) -> None:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        for r in rows:
            writer.writerow((r[0], repr(r[1]), repr(r[2]), repr(r[3]), r[4], "true" if r[5] else "false",
                             "true" if r[6] else "false"))
