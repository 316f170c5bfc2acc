"""Parsing and validation of raw trade messages (Binance websocket trade shape).

A message is one JSON object {"e": "trade", "E": 1672515782136, "s": "BNBBTC", "t": 12345,
"p": "0.001", "q": "100", "T": 1672515782136, "m": true, "M": true}, optionally wrapped in a
combined-stream envelope {"stream": "bnbbtc@trade", "data": {...}}, or a batch message: a JSON
array of such objects, one symbol's trades in order (what the producer sends when it batches,
docs/producer.md). Anything else is rejected with an InvalidTrade whose message is the dead-letter
reason; the caller keeps the raw message.

A batch message is a unit: its trades are accepted together or the whole message is a dead letter
(the reason names the first bad trade), so a dead letter always holds the exact bytes to replay and
a batch never needs more than one output where a single trade needs one. Batch messages are at
most MAX_DEAD_LETTER_CHARS long for the same reason: their dead letter keeps them whole.
"""
from __future__ import annotations

import json
import math
import re
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
# A trade message is two levels deep (the combined-stream envelope and the trade); deeper nesting is
# hostile, and beyond about 1,000 levels Python's JSON decoder raises RecursionError.
MAX_JSON_DEPTH = 8
_STRUCTURE = re.compile(r'["\\\[\]{}]')
# Trade ids are stored as UInt64 (trades) and Int64 (dead letters): a larger one would fail the insert.
MAX_TRADE_ID = 2**63 - 1
# Prices and quantities above this are not trades (the largest real ones are about 1e11 units of a
# meme coin); it also keeps price * qty and the rolling sums of squares far from overflow.
MAX_DECIMAL = 1e15
# Dead letters keep a raw message whole up to this size; a longer one is cut, and its reason says so.
MAX_DEAD_LETTER_CHARS = 64 * 1024
# A batch message is at most this long (about 450 trades), so that its dead letter keeps it whole.
MAX_BATCH_MESSAGE_CHARS = MAX_DEAD_LETTER_CHARS
# What an exchange sends as a decimal string: digits, an optional fraction and exponent.
DECIMAL = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z")


class InvalidTrade(ValueError):
    """The message is not a valid trade; str(error) is the dead-letter reason, "<kind>: <detail>".

    The kind (the reason up to its first colon, what dashboards and sql/queries/dead_letters_by_reason.sql
    group by) is one of a fixed set of phrases; the detail names the offending value."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def reason_kind(reason: str) -> str:
    """The kind of a dead-letter reason (as the SQL's splitByChar(':', reason)[1])."""
    return reason.split(":", 1)[0]


class Trade(NamedTuple):
    symbol: str
    trade_id: int
    price: float
    qty: float
    trade_time_ms: int
    event_time_ms: int
    is_buyer_maker: bool


# Names of the fields in reasons; values elsewhere in a message are "a value".
FIELD_NAMES = {"s": "symbol (s)", "t": "trade id (t)", "p": "price (p)", "q": "quantity (q)", "T": "trade time (T)",
               "E": "event time (E)", "m": "buyer-is-maker flag (m)"}


def _field_name(path: tuple) -> str:
    if path[:1] == ("data",) and len(path) == 2:
        path = path[1:]  # inside the combined-stream envelope
    return FIELD_NAMES.get(path[0], "a value") if len(path) == 1 else "a value"


def _nesting_depth(text: str) -> int:
    """How deeply objects and arrays nest in the text, brackets inside strings not counted; one
    linear pass over the quotes, backslashes and brackets, so json.loads never meets deep nesting."""
    depth = deepest = 0
    in_string, escaped_at = False, -1
    for token in _STRUCTURE.finditer(text):
        char, at = token.group(), token.start()
        if in_string:
            if at == escaped_at:
                continue
            if char == "\\":
                escaped_at = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


# json.loads makes exactly these types (never subclasses): a float, or a container of anything.
_MAY_HOLD_NON_FINITE = frozenset((float, dict, list))


def _check_finite(payload) -> None:
    """Refuses non-finite numbers anywhere in the message: NaN and Infinity are not JSON (RFC 8259),
    and 1e999 parses to infinity."""
    if type(payload) is dict and not any(type(item) in _MAY_HOLD_NON_FINITE for item in payload.values()):
        return  # a flat object without floats (every Binance trade: prices are strings): nothing to walk
    stack = [(payload, ())] if isinstance(payload, (dict, list)) else []
    while stack:
        node, path = stack.pop()
        for key, item in (node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(item, (dict, list)):
                stack.append((item, path + (key,)))
            elif isinstance(item, float) and not math.isfinite(item):
                where = path + (key,)
                raise InvalidTrade(f"{_field_name(where)} is not finite",
                                   f"{item!r} at {'.'.join(str(k) for k in where)[:80]}")


def load_json(raw: str | bytes, max_chars: int = MAX_MESSAGE_CHARS):
    """One message from the network, decoded with every bound checked before the next step:
    its size, then strict UTF-8 (bytes), then nesting, then JSON, then finiteness."""
    if len(raw) > max_chars:
        unit = "bytes" if isinstance(raw, (bytes, bytearray)) else "characters"
        raise InvalidTrade("message too large", f"{len(raw)} {unit} (limit {max_chars})")
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidTrade("not UTF-8", str(error)) from None
    if raw.count("[") + raw.count("{") > MAX_JSON_DEPTH and _nesting_depth(raw) > MAX_JSON_DEPTH:
        raise InvalidTrade("nested too deep", f"more than {MAX_JSON_DEPTH} levels of objects and arrays")
    try:
        payload = json.loads(raw)
    except RecursionError:   # not reached after the depth check; a last guard, as the decoder recurses
        raise InvalidTrade("nested too deep", "beyond the JSON decoder's recursion limit") from None
    except ValueError as error:
        raise InvalidTrade("malformed JSON", str(error)) from None
    _check_finite(payload)
    return payload


def _positive_number(payload: dict, key: str) -> float:
    name, value = FIELD_NAMES[key], payload.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidTrade(f"{name} must be a decimal string or number", f"got {type(value).__name__}")
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: a JSON integer beyond float's range
        raise InvalidTrade(f"{name} is not a number", f"{str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise InvalidTrade(f"{name} is not finite", f"{str(value)[:40]!r}")
    if isinstance(value, str) and not DECIMAL.match(value):
        # float() also takes ' 1', '1_000' and '١': not what an exchange sends
        raise InvalidTrade(f"{name} is not a number", f"{value[:40]!r} is not a plain decimal")
    if number <= 0:
        raise InvalidTrade(f"{name} must be positive", f"got {str(value)[:40]!r}")
    if number > MAX_DECIMAL:
        raise InvalidTrade(f"{name} is too large", f"{number:g} (limit {MAX_DECIMAL:g})")
    return number


def _integer(payload: dict, key: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTrade(f"{FIELD_NAMES[key]} must be an integer", f"got {type(value).__name__}")
    return value


def normalize_epoch_ms(value: int) -> int:
    """Binance timestamps in ms or µs -> ms."""
    return value // 1000 if value >= MICROSECONDS_ABOVE else value


def _timestamp_ms(payload: dict, key: str, now_ms: int) -> int:
    ms = normalize_epoch_ms(_integer(payload, key))
    if not EARLIEST_TRADE_MS <= ms <= now_ms + MAX_FUTURE_MS:
        raise InvalidTrade(f"{FIELD_NAMES[key]} is outside 2017-07-01 .. now+1 day", str(payload[key])[:40])
    return ms


def parse_trade(raw: str | bytes, accepts_symbol: Callable[[str], bool], now_ms: int | None = None) -> Trade:
    """Parses one raw message (text, or bytes that must be UTF-8) holding one trade into a Trade,
    or raises InvalidTrade with the reason."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return trade_of(load_json(raw), accepts_symbol, now_ms)


def is_batch_message(raw: str | bytes) -> bool:
    """Whether the message is a JSON array (a batch message), by its first character after whitespace."""
    # JSON's whitespace only; a message that starts with more of it than this is no batch.
    head = raw[:64].lstrip(b" \t\r\n" if isinstance(raw, (bytes, bytearray)) else " \t\r\n")
    return head[:1] in (b"[", "[")


def parse_message(raw: str | bytes, accepts_symbol: Callable[[str], bool], now_ms: int | None = None) -> list[Trade]:
    """Parses a message as the job reads it: one trade, or a batch message of one symbol's trades,
    all valid (see the module's docstring). Raises InvalidTrade with the reason for the message."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if not is_batch_message(raw):
        return [parse_trade(raw, accepts_symbol, now_ms)]
    payloads = load_json(raw, MAX_BATCH_MESSAGE_CHARS)
    if not payloads:
        raise InvalidTrade("not a JSON object", "an empty array")
    trades = []
    for index, payload in enumerate(payloads):
        try:
            trades.append(trade_of(payload, accepts_symbol, now_ms))
        except InvalidTrade as error:
            where = f"trade {index + 1} of {len(payloads)} in a batch message"
            detail = str(error)[len(error.kind) + 2:]
            raise InvalidTrade(error.kind, f"{detail} [{where}]" if detail else f"[{where}]") from None
    symbols = sorted({trade.symbol for trade in trades})
    if len(symbols) > 1:
        raise InvalidTrade("batch message mixes symbols", ", ".join(symbols)[:80])
    return trades


def trade_of(payload, accepts_symbol: Callable[[str], bool], now_ms: int) -> Trade:
    """A decoded trade object (load_json's result) -> Trade, or InvalidTrade with the reason."""
    if isinstance(payload, dict) and isinstance(payload.get("data"), dict) and "stream" in payload:
        payload = payload["data"]
    if not isinstance(payload, dict):
        raise InvalidTrade("not a JSON object", f"got {type(payload).__name__}")
    event_type = payload.get("e", "trade")
    if event_type != "trade":
        raise InvalidTrade("unsupported event type", f"{str(event_type)[:40]!r}")
    missing = [key for key in ("s", "t", "p", "q", "T", "m") if key not in payload]
    if missing:
        raise InvalidTrade("missing fields", ", ".join(missing))

    symbol = payload["s"]
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.match(symbol):
        raise InvalidTrade("symbol (s) is not a symbol", f"{str(symbol)[:40]!r}")
    if not accepts_symbol(symbol):
        raise InvalidTrade("unknown symbol", symbol)
    trade_id = _integer(payload, "t")
    if trade_id < 0:
        raise InvalidTrade("trade id (t) must not be negative", str(trade_id))
    if trade_id > MAX_TRADE_ID:
        raise InvalidTrade("trade id (t) is too large", f"{str(trade_id)[:40]} (limit {MAX_TRADE_ID})")
    price = _positive_number(payload, "p")
    qty = _positive_number(payload, "q")
    trade_time = _timestamp_ms(payload, "T", now_ms)
    event_time = _timestamp_ms(payload, "E", now_ms) if "E" in payload else trade_time
    maker = payload["m"]
    if not isinstance(maker, bool):
        raise InvalidTrade("buyer-is-maker flag (m) must be true or false", f"got {type(maker).__name__}")
    return Trade(symbol, trade_id, price, qty, trade_time, event_time, maker)


def dead_letter_raw(raw: str | bytes, reason: str) -> tuple[str, str]:
    """(raw, reason) as a dead letter keeps them: bytes as text (what is not UTF-8 as \\x escapes),
    cut to MAX_DEAD_LETTER_CHARS characters, the reason then saying so."""
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode("utf-8", errors="backslashreplace")
    if len(raw) > MAX_DEAD_LETTER_CHARS:
        reason = f"{reason} [raw message cut from {len(raw)} to {MAX_DEAD_LETTER_CHARS} characters]"
        raw = raw[:MAX_DEAD_LETTER_CHARS]
    return raw, reason


def to_message(trade: Trade) -> dict:
    """The websocket trade shape of a Trade (what the producer publishes; a batch message is a
    list of these, producer/batching.py)."""
    return {"e": "trade", "E": trade.event_time_ms, "s": trade.symbol, "t": trade.trade_id,
            "p": format_decimal(trade.price), "q": format_decimal(trade.qty), "T": trade.trade_time_ms,
            "m": trade.is_buyer_maker, "M": True}


def format_decimal(value: float) -> str:
    """Binance sends decimals as strings; repr keeps every digit of the float."""
    return repr(float(value))


def encode_message(trade: Trade) -> bytes:
    """A Trade as one compact message, in the canonical form the job parses fastest
    (flink_jobs/canonical_trades.py)."""
    return json.dumps(to_message(trade), separators=(",", ":")).encode()
