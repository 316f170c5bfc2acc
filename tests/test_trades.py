import json

import pytest

from flink_jobs.trades import MAX_MESSAGE_CHARS, InvalidTrade, Trade, parse_trade, to_message

NOW_MS = 1_764_000_000_000  # fixed "now" for the time-range checks: 2025-11-24
GOOD = {"e": "trade", "E": 1675329600140, "s": "ETHUSDT", "t": 1206419187, "p": "1666.80", "q": "26.062",
        "T": 1675329600138, "m": False, "M": True}


def parse(message, accepts=lambda s: s in ("ETHUSDT", "BTCUSDT")):
    raw = message if isinstance(message, str) else json.dumps(message)
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
    (json.dumps(with_(s="DOGEUSDT")), "unknown symbol DOGEUSDT"),
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
