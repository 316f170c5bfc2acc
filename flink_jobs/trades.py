"""Parsing and validation of raw trade messages (Binance websocket trade shape).

A message is one JSON object {"e": "trade", "E": 1672515782136, "s": "BNBBTC", "t": 12345,
"p": "0.001", "q": "100", "T": 1672515782136, "m": true, "M": true}, optionally wrapped in a
combined-stream envelope {"stream": "bnbbtc@trade", "data": {...}}. Anything else is rejected with
an InvalidTrade whose message is the dead-letter reason; the caller keeps the raw message.
"""
from __future__ import annotations

import json
import math
import time
from typing import Callable, NamedTuple

from config import SYMBOL_PATTERN

# Larger messages are rejected before parsing: a real trade frame is about 200 bytes, and a
# hostile megabyte string must not cost a megabyte of JSON parsing per record.
MAX_MESSAGE_CHARS = 16 * 1024
# Binance opened in July 2017; anything before is not a Binance trade time.
EARLIEST_TRADE_MS = 1_498_867_200_000
# Clocks drift, but not by a day.
MAX_FUTURE_MS = 24 * 3600 * 1000
# Above this a timestamp is in microseconds (Binance public data since 2025): ms now are ~1.7e12.
MICROSECONDS_ABOVE = 100_000_000_000_000


class InvalidTrade(ValueError):
    """The message is not a valid trade; str(error) is the dead-letter reason."""


class Trade(NamedTuple):
    symbol: str
    trade_id: int
    price: float
    qty: float
    trade_time_ms: int
    event_time_ms: int
    is_buyer_maker: bool


def _positive_number(payload: dict, key: str, name: str) -> float:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidTrade(f"{name} ({key}) must be a decimal string or number, got {type(value).__name__}")
    try:
        number = float(value)
    except ValueError:
        raise InvalidTrade(f"{name} ({key}) is not a number: {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise InvalidTrade(f"{name} ({key}) is not finite: {value!r}")
    if number <= 0:
        raise InvalidTrade(f"{name} ({key}) must be positive, got {value!r}")
    return number


def _integer(payload: dict, key: str, name: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTrade(f"{name} ({key}) must be an integer, got {type(value).__name__}")
    return value


def normalize_epoch_ms(value: int) -> int:
    """Binance timestamps in ms or µs -> ms."""
    return value // 1000 if value >= MICROSECONDS_ABOVE else value


def _timestamp_ms(payload: dict, key: str, name: str, now_ms: int) -> int:
    ms = normalize_epoch_ms(_integer(payload, key, name))
    if not EARLIEST_TRADE_MS <= ms <= now_ms + MAX_FUTURE_MS:
        raise InvalidTrade(f"{name} ({key}) {payload[key]} is outside 2017-07-01 .. now+1 day")
    return ms


def parse_trade(raw: str | bytes, accepts_symbol: Callable[[str], bool], now_ms: int | None = None) -> Trade:
    """Parses one raw message into a Trade, or raises InvalidTrade with the reason."""
    if len(raw) > MAX_MESSAGE_CHARS:
        raise InvalidTrade(f"message too large: {len(raw)} characters (limit {MAX_MESSAGE_CHARS})")
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidTrade(f"malformed JSON: {error}") from None
    if isinstance(payload, dict) and isinstance(payload.get("data"), dict) and "stream" in payload:
        payload = payload["data"]
    if not isinstance(payload, dict):
        raise InvalidTrade(f"not a JSON object but {type(payload).__name__}")
    event_type = payload.get("e", "trade")
    if event_type != "trade":
        raise InvalidTrade(f"unsupported event type {str(event_type)[:40]!r}")
    missing = [key for key in ("s", "t", "p", "q", "T", "m") if key not in payload]
    if missing:
        raise InvalidTrade(f"missing fields: {', '.join(missing)}")

    symbol = payload["s"]
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.match(symbol):
        raise InvalidTrade(f"symbol (s) is not a symbol: {str(symbol)[:40]!r}")
    if not accepts_symbol(symbol):
        raise InvalidTrade(f"unknown symbol {symbol}")
    trade_id = _integer(payload, "t", "trade id")
    if trade_id < 0:
        raise InvalidTrade(f"trade id (t) must not be negative, got {trade_id}")
    price = _positive_number(payload, "p", "price")
    qty = _positive_number(payload, "q", "quantity")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    trade_time = _timestamp_ms(payload, "T", "trade time", now_ms)
    event_time = _timestamp_ms(payload, "E", "event time", now_ms) if "E" in payload else trade_time
    maker = payload["m"]
    if not isinstance(maker, bool):
        raise InvalidTrade(f"buyer-is-maker flag (m) must be true or false, got {type(maker).__name__}")
    return Trade(symbol, trade_id, price, qty, trade_time, event_time, maker)


def to_message(trade: Trade) -> dict:
    """The websocket trade shape of a Trade (what the producer publishes)."""
    return {"e": "trade", "E": trade.event_time_ms, "s": trade.symbol, "t": trade.trade_id,
            "p": format_decimal(trade.price), "q": format_decimal(trade.qty), "T": trade.trade_time_ms,
            "m": trade.is_buyer_maker, "M": True}


def format_decimal(value: float) -> str:
    """Binance sends decimals as strings; repr keeps every digit of the float."""
    return repr(float(value))
