"""The batch parser gives exactly parse_message's answer for every message (flink_jobs/canonical_trades.py):
the same trade (or a batch message's trades), field for field and type for type, or the same
dead-letter reason.

Messages are built in the canonical shape with values drawn near every bound parse_trade checks,
and then dressed in the shapes that must leave the fast path (whitespace, another key order, the
combined-stream envelope, escapes), alone or several in a batch message, in batches mixing them.
"""
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flink_jobs import canonical_trades
from flink_jobs.canonical_trades import parse_messages
from flink_jobs.trades import (EARLIEST_TRADE_MS, MAX_BATCH_MESSAGE_CHARS, MAX_FUTURE_MS, InvalidTrade,
                               is_batch_message, parse_message, parse_trade)

NOW_MS = 1_764_000_000_000
KNOWN = ("BTCUSDT", "ETHUSDT", "XRPETH")
accepts = KNOWN.__contains__
CANONICAL = ('{"e":"trade","E":1763999999990,"s":"BTCUSDT","t":7,"p":"91000.12","q":"0.0005","T":1763999999987,'
             '"m":true,"M":true}')

TIMES = st.one_of(
    st.sampled_from([0, EARLIEST_TRADE_MS - 1, EARLIEST_TRADE_MS, NOW_MS, NOW_MS + MAX_FUTURE_MS,
                     NOW_MS + MAX_FUTURE_MS + 1, NOW_MS * 1000, NOW_MS * 1000 + 999, (NOW_MS + MAX_FUTURE_MS) * 1000 + 999,
                     (NOW_MS + MAX_FUTURE_MS + 1) * 1000, 10**18 - 1, 10**18, 2**63, -NOW_MS]),
    st.integers(EARLIEST_TRADE_MS, NOW_MS + MAX_FUTURE_MS))
IDS = st.one_of(st.sampled_from([0, 1, 10**18 - 1, 10**18, 2**63 - 1, 2**63, -1]), st.integers(0, 10**12))
DECIMALS = st.one_of(
    st.from_regex(r"[0-9]{1,22}(\.[0-9]{0,22})?", fullmatch=True),
    st.sampled_from(["0", "0.0", "0.00000001", "1e5", "-1", "+1", " 1", "1_000", ".5", "5.", "1000000000000000",
                     "1000000000000000.1", "999999999999999.9", "123456789012345678901", "nan", "inf"]),
    st.floats(min_value=1e-8, max_value=1e16).map(repr))
SYMBOLS = st.one_of(st.sampled_from(KNOWN + ("DOGEUSDT", "btcusdt", "B", "")), st.from_regex(r"[A-Za-z0-9]{0,32}", fullmatch=True))


VALID = {"E": st.integers(EARLIEST_TRADE_MS, NOW_MS + MAX_FUTURE_MS).map(str),
         "s": st.sampled_from(KNOWN).map(json.dumps),
         "t": st.integers(0, 10**12).map(str),
         "p": st.from_regex(r"[1-9][0-9]{0,8}(\.[0-9]{1,10})?", fullmatch=True).map(json.dumps),
         "q": st.from_regex(r"0\.[0-9]{0,7}[1-9]", fullmatch=True).map(json.dumps),
         "T": st.integers(EARLIEST_TRADE_MS, NOW_MS + MAX_FUTURE_MS).map(str),
         "m": st.sampled_from(["true", "false"])}
EDGES = {"E": TIMES.map(str), "s": SYMBOLS.map(json.dumps), "t": IDS.map(str), "p": DECIMALS.map(json.dumps),
         "q": DECIMALS.map(json.dumps), "T": TIMES.map(str),
         "m": st.sampled_from(["1", '"true"', "null", "True"])}


@st.composite
def canonical(draw) -> str:
    """A message in the canonical key order and compact form: a valid trade with none, one or a few
    of its values moved to or past a bound parse_trade checks."""
    moved = draw(st.lists(st.sampled_from(sorted(VALID)), max_size=3, unique=True))
    values = {key: draw(EDGES[key] if key in moved else VALID[key]) for key in VALID}
    tail = draw(st.sampled_from(["", ',"M":true', ',"M":false', ',"M":1']))
    return (f'{{"e":"trade","E":{values["E"]},"s":{values["s"]},"t":{values["t"]},"p":{values["p"]},'
            f'"q":{values["q"]},"T":{values["T"]},"m":{values["m"]}{tail}}}')


@st.composite
def dressed(draw) -> str:
    """A canonical message, or the same trade in a shape the fast path must not take."""
    text = draw(canonical())
    how = draw(st.sampled_from(["as is", "spaces", "reordered", "envelope", "escaped", "zero-padded", "repeated key",
                                "trailing newline", "cut"]))
    if how == "spaces":
        return text.replace(",", ", ").replace(":", ": ")
    if how == "reordered":
        try:
            message = json.loads(text)
        except ValueError:
            return text
        return json.dumps(dict(reversed(message.items())), separators=(",", ":"))
    if how == "envelope":
        return f'{{"stream":"btcusdt@trade","data":{text}}}'
    if how == "escaped":
        return text.replace('"trade"', '"\\u0074rade"')
    if how == "zero-padded":
        return text.replace('"t":', '"t":0', 1)
    if how == "repeated key":
        return text.replace('"e":"trade",', '"e":"trade","s":"ETHUSDT",', 1)
    if how == "trailing newline":
        return text + "\n"
    if how == "cut":
        return text[:draw(st.integers(0, len(text)))]
    return text


@st.composite
def batch_message(draw) -> str:
    """A batch message of a few messages: canonical ones moved to one symbol and joined compactly
    (the fast path's shape), or joined with a space, or dressed ones (any symbols, any shape)."""
    how = draw(st.sampled_from(["compact", "compact", "spaced", "dressed"]))
    if how == "dressed":
        texts = draw(st.lists(dressed(), min_size=0, max_size=5))
    else:
        symbol = draw(st.sampled_from(KNOWN))
        texts = [text.replace('"s":"BTCUSDT"', f'"s":"{symbol}"').replace('"s":"ETHUSDT"', f'"s":"{symbol}"')
                 .replace('"s":"XRPETH"', f'"s":"{symbol}"') for text in draw(st.lists(canonical(), min_size=1, max_size=5))]
    return "[" + (", " if how == "spaced" else ",").join(texts) + "]"


def one_by_one(raw):
    """parse_message's answer, typed: a trade's fields with their types (a list of them for a batch
    message), or the reason."""
    if raw is None:
        return "empty message: the record has no value"
    try:
        trades = parse_message(raw, accepts, now_ms=NOW_MS)
    except InvalidTrade as error:
        return str(error)
    typed = [[(type(v), v) for v in trade] for trade in trades]
    return typed if is_batch_message(raw) else typed[0]


def batched(raws) -> list:
    return [str(r) if isinstance(r, InvalidTrade) else
            [[(type(v), v) for v in trade] for trade in r] if isinstance(r, list) else [(type(v), v) for v in r]
            for r in parse_messages(raws, accepts, NOW_MS)]


@given(st.lists(st.one_of(dressed(), batch_message()), min_size=1, max_size=40), st.booleans())
def test_a_batch_gives_parse_messages_answer_for_every_message(texts, as_bytes):
    raws = [t.encode() for t in texts] if as_bytes else texts
    assert batched(raws) == [one_by_one(raw) for raw in raws]


@given(st.lists(canonical(), min_size=1, max_size=40))
def test_canonical_messages_agree_as_bytes_and_as_text(texts):
    assert batched([t.encode() for t in texts]) == batched(texts) == [one_by_one(t) for t in texts]


def test_valid_canonical_messages_do_not_reach_parse_message_and_others_do(monkeypatch):
    """The fast path is taken: a canonical trade is parsed without parse_message, anything else with it."""
    others = [CANONICAL.replace(",", ", "), CANONICAL.replace('"BTCUSDT"', '"DOGEUSDT"'),
              CANONICAL.replace('"0.0005"', '"0"'), None, b"\xff"]
    seen = []

    def recording(raw, accepts_symbol, now_ms=None):
        seen.append(raw)
        return parse_message(raw, accepts_symbol, now_ms)

    monkeypatch.setattr(canonical_trades, "parse_message", recording)
    results = parse_messages([CANONICAL.encode()] + [o.encode() if isinstance(o, str) else o for o in others],
                             accepts, NOW_MS)

    assert results[0] == ("BTCUSDT", 7, 91000.12, 0.0005, 1763999999987, 1763999999990, True)
    assert seen == [others[0].encode(), others[1].encode(), others[2].encode(), b"\xff"]   # not None: no value
    assert [str(r) for r in results[2:]] == ["unknown symbol: DOGEUSDT", "quantity (q) must be positive: got '0'",
                                             "empty message: the record has no value",
                                             str(_error(b"\xff"))]
    assert isinstance(results[1], tuple) and results[1][0] == "BTCUSDT"    # parsed, by parse_trade


def test_canonical_batch_messages_of_one_symbol_do_not_reach_parse_message_and_others_do(monkeypatch):
    second = CANONICAL.replace('"t":7', '"t":8')
    good = f"[{CANONICAL},{second}]"
    others = [f"[{CANONICAL}, {second}]",                                      # not compact
              f"[{CANONICAL},{second.replace('BTCUSDT', 'ETHUSDT')}]",         # two symbols
              f"[{CANONICAL},{second.replace('0.0005', '0')}]",                # a bad trade: the whole message
              good[:-1],                                                      # cut
              "[" + ",".join([CANONICAL] * (MAX_BATCH_MESSAGE_CHARS // len(CANONICAL))) + "]"]   # too long
    seen = []

    def recording(raw, accepts_symbol, now_ms=None):
        seen.append(raw)
        return parse_message(raw, accepts_symbol, now_ms)

    monkeypatch.setattr(canonical_trades, "parse_message", recording)
    results = parse_messages([good.encode()] + [o.encode() for o in others], accepts, NOW_MS)

    assert [trade[1] for trade in results[0]] == [7, 8] and seen == [o.encode() for o in others]
    assert [t[1] for t in results[1]] == [7, 8]
    assert [str(r) for r in results[2:]] == [
        "batch message mixes symbols: BTCUSDT, ETHUSDT",
        "quantity (q) must be positive: got '0' [trade 2 of 2 in a batch message]",
        str(_error(good[:-1].encode())),
        f"message too large: {len(others[4])} bytes (limit {MAX_BATCH_MESSAGE_CHARS})"]


def _error(raw) -> InvalidTrade:
    with pytest.raises(InvalidTrade) as caught:
        parse_message(raw, accepts, NOW_MS)
    return caught.value


@pytest.mark.parametrize("raws", [[], [None, None], ["not json", b"{}"],
                                  [CANONICAL, CANONICAL.encode()]], ids=["empty", "no values", "no match", "mixed"])
def test_batches_without_one_kind_of_message_go_one_by_one(raws):
    assert batched(raws) == [one_by_one(raw) for raw in raws]


def test_microsecond_timestamps_become_milliseconds_as_one_by_one():
    text = ('{"e":"trade","E":1763999999990123,"s":"ETHUSDT","t":1,"p":"3000","q":"1","T":1763999999987999,'
            '"m":false}')
    assert parse_messages([text], accepts, NOW_MS)[0][4:6] == (1763999999987, 1763999999990)
    assert batched([text]) == [one_by_one(text)]
