"""Property-based fuzzing of parse_trade with hypothesis: whatever the input, a Trade that keeps
every invariant or an InvalidTrade, never another exception; and a valid trade, serialised as
Binance sends it, parses back to the same values.

Deterministic in CI: the profile "ci" (tests/conftest.py, the default) fixes the number of examples
and derandomizes the search; HYPOTHESIS_PROFILE=deep searches longer, with fresh randomness.
"""
import json
import math
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from config import SYMBOL_PATTERN
from flink_jobs.trades import (EARLIEST_TRADE_MS, MAX_DECIMAL, MAX_FUTURE_MS, MAX_TRADE_ID, InvalidTrade, Trade,
                               format_decimal, parse_trade)

NOW_MS = 1_764_000_000_000      # 2025-11-24, a fixed "now" for the time window
KNOWN = ("ETHUSDT", "XRPETH")
accepts = KNOWN.__contains__


def parsed_or_rejected(raw) -> Trade | None:
    """The property every input must keep."""
    try:
        trade = parse_trade(raw, accepts, now_ms=NOW_MS)
    except InvalidTrade as error:
        assert str(error) and ":" not in error.kind     # a reason, whose kind is the text up to ':'
        return None
    assert isinstance(trade, Trade)
    assert isinstance(trade.symbol, str) and SYMBOL_PATTERN.match(trade.symbol) and accepts(trade.symbol)
    assert type(trade.trade_id) is int and 0 <= trade.trade_id <= MAX_TRADE_ID
    for value in (trade.price, trade.qty):
        assert type(value) is float and math.isfinite(value) and 0 < value <= MAX_DECIMAL
    assert math.isfinite(trade.price * trade.qty)
    for ms in (trade.trade_time_ms, trade.event_time_ms):
        assert type(ms) is int and EARLIEST_TRADE_MS <= ms <= NOW_MS + MAX_FUTURE_MS
    assert type(trade.is_buyer_maker) is bool
    return trade


# Arbitrary input ---------------------------------------------------------------------------------
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_parse_or_are_rejected(raw):
    parsed_or_rejected(raw)


@given(st.text(max_size=2048))
def test_arbitrary_text_parses_or_is_rejected(raw):
    parsed_or_rejected(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=40)


@given(json_values)
def test_arbitrary_json_values_parse_or_are_rejected(value):
    parsed_or_rejected(json.dumps(value))


# Near-valid trades: a valid one with up to three fields missing or junk -------------------------
binance_decimals = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1e15"), places=8)
valid_times = st.integers(min_value=EARLIEST_TRADE_MS, max_value=NOW_MS + MAX_FUTURE_MS)
valid_trades = st.fixed_dictionaries({
    "e": st.just("trade"), "E": valid_times, "s": st.sampled_from(KNOWN),
    "t": st.integers(min_value=0, max_value=MAX_TRADE_ID), "p": binance_decimals.map(str),
    "q": binance_decimals.map(str), "T": valid_times, "m": st.booleans(), "M": st.booleans()})
decimal_junk = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-inf", "1e999", "0", "-0", "1_0", " 1", "1 ", "1e", ".5", "5.", "+1",
                     "0x10", "1e16", "\u0661", "-1.5"]),
    st.integers(min_value=2**1024, max_value=2**1100),           # beyond float: OverflowError in float()
    st.floats(min_value=MAX_DECIMAL, exclude_min=True),            # too large, up to infinity
    st.decimals(allow_nan=False, allow_infinity=False).map(str), st.floats(), st.integers())
time_junk = st.one_of(
    st.integers(), st.integers(min_value=EARLIEST_TRADE_MS * 1000, max_value=(NOW_MS + MAX_FUTURE_MS) * 1000 + 9999),
    st.sampled_from([0, -1, EARLIEST_TRADE_MS - 1, NOW_MS + MAX_FUTURE_MS + 1, 2**63, 2**64, 32_503_680_000_000]))
JUNK = {"e": st.sampled_from(["aggTrade", "TRADE", "", None]),
        "s": st.one_of(st.sampled_from(["DOGEUSDT", "ethusdt", "ETHUSDT\n", "", "E" * 31]), st.text(max_size=8)),
        "t": st.one_of(st.sampled_from([2**63, 2**64, -1]), st.integers(min_value=MAX_TRADE_ID), st.integers()),
        "p": decimal_junk, "q": decimal_junk, "T": time_junk, "E": time_junk,
        "m": st.sampled_from([0, 1, "true", None])}


@st.composite
def near_valid_trades(draw):
    message = draw(valid_trades)
    for key in draw(st.lists(st.sampled_from(sorted(JUNK) + ["M", "extra"]), max_size=3, unique=True)):
        if key in message and draw(st.integers(0, 3)) == 0:
            del message[key]
        else:
            message[key] = draw(st.one_of(JUNK.get(key, json_values), json_values))
    return message


@given(near_valid_trades(), st.booleans(), st.booleans())
def test_near_valid_trades_parse_or_are_rejected(message, envelope, as_bytes):
    if envelope:
        message = {"stream": "x@trade", "data": message}
    raw = json.dumps(message)     # NaN and Infinity come out as JSON tokens, which the parser must refuse
    parsed_or_rejected(raw.encode() if as_bytes else raw)


@given(valid_trades, st.sampled_from(["p", "q", "T", "E", "M", "extra"]),
       st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"]))
def test_nan_or_infinity_anywhere_is_rejected(message, key, token):
    raw = json.dumps({**message, key: "@"}).replace('"@"', token)
    assert parsed_or_rejected(raw) is None


@given(valid_trades, st.sampled_from(["p", "q"]),
       st.one_of(st.floats(min_value=MAX_DECIMAL, exclude_min=True, allow_infinity=False),
                 st.integers(min_value=int(MAX_DECIMAL) + 1, max_value=2**1100)), st.booleans())
def test_prices_and_sizes_beyond_the_bound_are_rejected_as_numbers_or_strings(message, key, value, as_string):
    assert parsed_or_rejected(json.dumps({**message, key: repr(value) if as_string else value})) is None


@given(valid_trades, st.integers(min_value=5, max_value=3000), st.sampled_from(["[%s]", '{"k": %s}']))
def test_nesting_deeper_than_the_bound_is_rejected_and_the_bound_itself_is_not(message, depth, shape):
    inner = "0"
    for _ in range(depth):
        inner = shape % inner
    raw = json.dumps({**message, "extra": "@"}).replace('"@"', inner)
    trade = parsed_or_rejected(raw)
    assert (trade is None) == (depth >= 8)    # the message itself is one level


# Round trip --------------------------------------------------------------------------------------


@given(symbol=st.sampled_from(KNOWN), trade_id=st.integers(min_value=0, max_value=MAX_TRADE_ID),
       price=binance_decimals, qty=binance_decimals,
       trade_time=st.integers(min_value=EARLIEST_TRADE_MS, max_value=NOW_MS + MAX_FUTURE_MS),
       lag=st.integers(min_value=0, max_value=5000), maker=st.booleans(), micros=st.booleans(),
       envelope=st.booleans(), style=st.sampled_from(["binance", "repr", "number"]))
def test_a_valid_trade_serialised_as_binance_sends_it_parses_back_to_the_same_values(
        symbol, trade_id, price, qty, trade_time, lag, maker, micros, envelope, style):
    event_time = min(trade_time + lag, NOW_MS + MAX_FUTURE_MS)

    def text(value: Decimal):
        if style == "binance":
            return f"{value:.8f}"                 # what the websocket sends: "1666.80000000"
        if style == "repr":
            return format_decimal(float(value))    # what our producer sends
        return float(value)                        # a JSON number

    scale, extra = (1000, 999) if micros else (1, 0)
    message = {"e": "trade", "E": event_time * scale + extra, "s": symbol, "t": trade_id, "p": text(price),
               "q": text(qty), "T": trade_time * scale + extra, "m": maker, "M": True}
    if envelope:
        message = {"stream": f"{symbol.lower()}@trade", "data": message}
    trade = parsed_or_rejected(json.dumps(message, separators=(",", ":")))
    assert trade == Trade(symbol, trade_id, float(price), float(qty), trade_time, event_time, maker)
