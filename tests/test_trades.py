import json
import re

import pytest

from flink_jobs.trades import (MAX_BATCH_MESSAGE_CHARS, MAX_MESSAGE_CHARS, InvalidTrade, Trade,
                               parse_message, parse_trade, reason_kind, to_message)
from producer.batching import batch_messages

NOW_MS = 1_764_000_000_000  # fixed "now" for the time-range checks: 2025-11-24
GOOD = {"e": "trade", "E": 1675329600140, "s": "ETHUSDT", "t": 1206419187, "p": "1666.80", "q": "26.062",
        "T": 1675329600138, "m": False, "M": True}


def parse(message, accepts=lambda s: s in ("ETHUSDT", "BTCUSDT")):
    raw = message if isinstance(message, (str, bytes)) else json.dumps(message)
    return parse_trade(raw, accepts, now_ms=NOW_MS)


def with_(**changes):
    message = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            del message[key]
        else:
            message[key] = value
    return message


def test_a_websocket_trade_parses_into_typed_fields():
    assert parse(GOOD) == Trade("ETHUSDT", 1206419187, 1666.8, 26.062, 1675329600138, 1675329600140, False)


def test_the_combined_stream_envelope_is_unwrapped():
    assert parse({"stream": "ethusdt@trade", "data": GOOD}).trade_id == 1206419187


def test_microsecond_timestamps_become_milliseconds():
    trade = parse(with_(T=1675329600138123, E=1675329600140456))
    assert (trade.trade_time_ms, trade.event_time_ms) == (1675329600138, 1675329600140)


def test_event_time_defaults_to_trade_time_and_numbers_may_be_json_numbers():
    trade = parse(with_(E=..., p=1666.8, q=2))
    assert (trade.event_time_ms, trade.price, trade.qty) == (1675329600138, 1666.8, 2.0)


def test_to_message_round_trips():
    trade = parse(GOOD)
    assert parse(to_message(trade)) == trade


@pytest.mark.parametrize("raw, reason", [
    ("{not json", "malformed JSON"),
    ("", "malformed JSON"),
    ("[1, 2]", "not a JSON object"),
    ('"trade"', "not a JSON object"),
    (json.dumps(with_(e="aggTrade")), "unsupported event type"),
    (json.dumps(with_(p=...)), "missing fields: p"),
    (json.dumps(with_(s=..., T=...)), "missing fields: s, T"),
    (json.dumps(with_(s=42)), "symbol"),
    (json.dumps(with_(s="DOGEUSDT")), "unknown symbol: DOGEUSDT"),
    (json.dumps(with_(t="1206419187")), "trade id"),
    (json.dumps(with_(t=True)), "trade id"),
    (json.dumps(with_(t=-5)), "must not be negative"),
    (json.dumps(with_(p="NaN")), "not finite"),
    (json.dumps(with_(q="Infinity")), "not finite"),
    (json.dumps(with_(p=float("nan"))), "not finite"),
    (json.dumps(with_(p="-1666.8")), "must be positive"),
    (json.dumps(with_(p="0")), "must be positive"),
    (json.dumps(with_(q="0.000")), "must be positive"),
    (json.dumps(with_(q="lots")), "not a number"),
    (json.dumps(with_(p=None)), "decimal string or number"),
    (json.dumps(with_(p=[1])), "decimal string or number"),
    (json.dumps(with_(T="1675329600138")), "trade time"),
    (json.dumps(with_(T=1000)), "outside"),
    (json.dumps(with_(T=NOW_MS + 2 * 86_400_000)), "outside"),
    (json.dumps(with_(m="false")), "true or false"),
    (json.dumps(with_(s="ETHUSDT" + "x" * MAX_MESSAGE_CHARS)), "message too large"),
])
def test_invalid_messages_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidTrade, match=reason):
        parse(raw)


@pytest.mark.parametrize("raw, reason", [
    (b'{"e": "trade", "s": "ETH\xffUSDT"}', "not UTF-8"),
    ("[" * 5000 + "]" * 5000, "nested too deep: more than 8"),   # json.loads would raise RecursionError
    ('{"e": "trade", "x": ' + "[" * 7000, "nested too deep"),     # unterminated, whatever the recursion limit
    (json.dumps(with_(x=[[[[[[[[1]]]]]]]])), "nested too deep: more than"),
    (json.dumps(with_(M=float("nan"))), "a value is not finite: nan at M"),
    (json.dumps({"stream": "ethusdt@trade", "data": with_(q=float("-inf"))}), "quantity (q) is not finite: -inf at data.q"),
    ('{"p": 1e999}', "price (p) is not finite"),
    (json.dumps(with_(p=10**400)), "price (p) is not a number"),   # float() raises OverflowError
    (json.dumps(with_(p="1_666.8")), "price (p) is not a number: '1_666.8' is not a plain decimal"),
    (json.dumps(with_(q=" 26.062")), "is not a plain decimal"),
    (json.dumps(with_(q="1e16")), "quantity (q) is too large"),
    (json.dumps(with_(t=2**63)), "trade id (t) is too large"),
    (json.dumps(with_(E=-1)), "event time (E) is outside"),
    (json.dumps(with_(T=32_503_680_000_000)), "trade time (T) is outside"),       # year 3000 in ms
    (json.dumps(with_(T=32_503_680_000_000_000)), "trade time (T) is outside"),   # year 3000 in µs
    (json.dumps(with_(T=1_675_329_600_138_000_000)), "trade time (T) is outside"),  # nanoseconds
    (json.dumps(with_(T=1_675_329_600)), "trade time (T) is outside"),            # seconds
])
def test_hostile_messages_are_rejected_with_a_reason_and_never_another_exception(raw, reason):
    with pytest.raises(InvalidTrade, match=re.escape(reason)):
        parse(raw)


def test_a_reason_is_its_kind_then_the_details_after_the_first_colon():
    with pytest.raises(InvalidTrade) as error:
        parse(json.dumps(with_(T=1000)))
    assert error.value.kind == reason_kind(str(error.value)) == "trade time (T) is outside 2017-07-01 .. now+1 day"
    assert str(error.value) == "trade time (T) is outside 2017-07-01 .. now+1 day: 1000"


def test_utf8_bytes_parse_like_text_and_shallow_nesting_and_brackets_in_strings_are_allowed():
    raw = json.dumps({"stream": "ethusdt@trade", "data": with_(extra={"a": [1, {"b": [[[2]]]}]},
                                                                 note='[[[[[[[[[[ \\" {{{{{{{{{{')})
    assert parse_trade(raw.encode(), {"ETHUSDT"}.__contains__, now_ms=NOW_MS) == parse(GOOD)


def parse_batch(messages: list, accepts=lambda s: s in ("ETHUSDT", "BTCUSDT")):
    return parse_message(json.dumps(messages), accepts, now_ms=NOW_MS)


def test_a_batch_message_gives_its_trades_in_order_and_a_single_message_one():
    assert parse_batch([GOOD, with_(t=5), {"stream": "ethusdt@trade", "data": with_(t=6)}]) == [
        parse(GOOD), parse(with_(t=5)), parse(with_(t=6))]
    assert parse_message(json.dumps(GOOD), lambda s: True, now_ms=NOW_MS) == [parse(GOOD)]
    assert parse_message("  \n[" + json.dumps(GOOD) + "]", lambda s: True, now_ms=NOW_MS) == [parse(GOOD)]


@pytest.mark.parametrize("messages, reason", [
    ([], "not a JSON object: an empty array"),
    ([GOOD, 7], "not a JSON object: got int [trade 2 of 2 in a batch message]"),
    ([GOOD, with_(p="0")], "price (p) must be positive: got '0' [trade 2 of 2 in a batch message]"),
    ([with_(s="DOGEUSDT"), GOOD], "unknown symbol: DOGEUSDT [trade 1 of 2 in a batch message]"),
    ([with_(m=...)], "missing fields: m [trade 1 of 1 in a batch message]"),
    ([GOOD, with_(s="BTCUSDT")], "batch message mixes symbols: BTCUSDT, ETHUSDT"),
    ([[GOOD]], "not a JSON object: got list [trade 1 of 1 in a batch message]"),
])
def test_a_batch_message_is_accepted_whole_or_rejected_whole_with_its_first_bad_trade_named(messages, reason):
    with pytest.raises(InvalidTrade) as error:
        parse_batch(messages)
    assert str(error.value) == reason
    # The kind stays the single trade's, for the dashboards that group by it
    assert reason_kind(str(error.value)) in {"not a JSON object", "price (p) must be positive", "unknown symbol",
                                             "missing fields", "batch message mixes symbols"}


def test_a_batch_message_longer_than_a_dead_letter_keeps_is_rejected_before_parsing():
    raw = json.dumps([GOOD] * (MAX_BATCH_MESSAGE_CHARS // len(json.dumps(GOOD)) + 1))
    with pytest.raises(InvalidTrade, match=f"message too large: {len(raw)} characters .limit {MAX_BATCH_MESSAGE_CHARS}"):
        parse_message(raw, lambda s: True, now_ms=NOW_MS)


def test_batch_messages_cut_a_symbol_s_trades_at_the_count_and_the_size_limit_and_parse_back():
    trades = [Trade("ETHUSDT", i, 1666.8 + i, 0.5, 1675329600138 + i, 1675329600140 + i, i % 3 == 0)
              for i in range(2000)]
    by_count = batch_messages(trades[:10], 4)
    assert [len(parse_message(m, lambda s: True, NOW_MS)) for m in by_count] == [4, 4, 2]
    by_size = batch_messages(trades, 10_000)
    assert all(len(m) <= MAX_BATCH_MESSAGE_CHARS for m in by_size)
    assert len(by_size) > 1 and all(len(m) > MAX_BATCH_MESSAGE_CHARS - 200 for m in by_size[:-1])  # cut when full
    assert [t for m in by_size for t in parse_message(m, lambda s: True, NOW_MS)] == trades
    singles = batch_messages(trades[:3], 1)
    assert [parse_trade(m, lambda s: True, NOW_MS) for m in singles] == trades[:3] and singles[0][:1] == b"{"


def test_only_json_whitespace_may_precede_a_batch_message():
    batch = "[" + json.dumps(GOOD) + "]"
    assert parse_message(" \t\r\n" + batch, lambda s: True, now_ms=NOW_MS) == [parse(GOOD)]
    with pytest.raises(InvalidTrade, match=f"message too large: .* .limit {MAX_MESSAGE_CHARS}"):   # a single message's
        parse_message("\x0b" + "[" + ",".join([json.dumps(GOOD)] * 200) + "]", lambda s: True, now_ms=NOW_MS)
