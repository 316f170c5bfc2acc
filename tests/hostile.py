"""A deterministic corpus of hostile and malformed trade messages, each with the outcome the job
must give it, and a mix of that corpus into real traffic.

    corpus(seed)          -> list[Hostile]: stand-alone messages the parser must dead-letter, with
                             the kind of reason it must give (1,000+ of them)
    mixed(real, corpus)   -> Mixed: the corpus spread over real trades of two symbols, one symbol per
                             Kafka partition, plus what needs the stream around it: real trades in
                             hostile but valid dress (accepted), duplicates and swapped (out-of-order)
                             trades (dead letters of stage "detect"), trades an hour... a day late for
                             their bars (stored, and dead letters of stage "bars")

Every message is unique, and its first 64 KiB too (dead letters are keyed by a hash of the raw
text kept, which is cut there), so each can be found in the store by its raw text. The outcome
of every message is decided here, by construction, and checked against the parser by the unit
tests (tests/test_hostile_corpus.py) and against the whole job by tests/e2e/test_hostile_input.py.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

# The expected reason kinds (the dead-letter reason up to its first colon).
MALFORMED_JSON = "malformed JSON"
NOT_OBJECT = "not a JSON object"
MISSING = "missing fields"
TOO_LARGE = "message too large"
NOT_UTF8 = "not UTF-8"
TOO_DEEP = "nested too deep"
UNKNOWN_SYMBOL = "unknown symbol"
NOT_SYMBOL = "symbol (s) is not a symbol"
EVENT_TYPE = "unsupported event type"
REPEATED = "repeated or out-of-order trade id"
LATE = "late for bar window"

# A real ETHUSDT trade (producer/samples/ETHUSDT-trades-2023-02-02.csv, first row) in websocket shape.
TEMPLATE = {"e": "trade", "E": 1675329600141, "s": "ETHUSDT", "t": 1206419187, "p": "1666.8", "q": "26.062",
            "T": 1675329600138, "m": False, "M": True}
NAMES = {"s": "symbol (s)", "t": "trade id (t)", "p": "price (p)", "q": "quantity (q)", "T": "trade time (T)",
         "E": "event time (E)", "m": "buyer-is-maker flag (m)"}
MEGABYTE = 1_000_000
YEAR_3000_MS = 32_503_680_000_000


@dataclass(frozen=True)
class Hostile:
    id: int
    kind: str               # the class of hostile input (docs/reliability.md counts them)
    raw: bytes
    outcome: str            # "dead_letter" or "accepted"
    stage: str = ""         # of the dead letter: parse, detect or bars
    reason: str = ""        # the kind of its reason
    symbol: str = ""        # of the trade it carries, when it carries one
    trade_id: int = -1


def _dumps(message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


class _Corpus:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.items: list[Hostile] = []

    def tag(self) -> str:
        return f"h{len(self.items)}"

    def add(self, kind: str, raw: bytes | str, reason: str) -> None:
        raw = raw.encode() if isinstance(raw, str) else raw
        self.items.append(Hostile(len(self.items), kind, raw, "dead_letter", "parse", reason))

    def trade(self, **changes) -> dict:
        """The template with changes (a value of ... deletes the field) and a unique tag field."""
        message = {**TEMPLATE, "x": self.tag()}
        for key, value in changes.items():
            if value is ...:
                message.pop(key, None)
            else:
                message[key] = value
        return message


def _invalid_json(c: _Corpus) -> None:
    good = json.dumps(TEMPLATE)
    for n in range(132):
        tag = c.tag()
        variant = n % 11
        if variant == 0:
            raw = '{"x":"%s",' % tag + good[1:][:c.rng.randrange(1, len(good) - 2)]        # truncated
        elif variant == 1:
            raw = good[:-1] + ',"x":"%s"}' % tag + c.rng.choice(["}", "]", "x", ",", "{}"])  # trailing garbage
        elif variant == 2:
            raw = good.replace('"', "'")[:-1] + ",'x':'%s'}" % tag                         # single quotes
        elif variant == 3:
            raw = "{e: trade, s: ETHUSDT, x: %s}" % tag                                      # unquoted
        elif variant == 4:
            raw = '{"x":"%s"}{"e":"trade"}' % tag                                            # two documents
        elif variant == 5:
            raw = "\ufeff" + good[:-1] + ',"x":"%s"}' % tag                                  # byte-order mark
        elif variant == 6:
            raw = '{"x":"%s","p":01.5}' % tag                                                # leading zero
        elif variant == 7:
            raw = '{"x":"%s","s":"ETH\x01USDT"}' % tag                                       # control character
        elif variant == 8:
            raw = '{"x":"%s","p":"1666.8\\x"}' % tag                                         # bad escape
        elif variant == 9:
            raw = "%s %s" % (tag, "".join(c.rng.choice("}]:,\"'abc019 ") for _ in range(c.rng.randrange(1, 80))))
        else:
            raw = '{"x":"%s","t":1206419187,}' % tag                                         # trailing comma
        c.add("invalid JSON", raw, MALFORMED_JSON)
    for raw in ("", " ", "\n\t", "null,"):
        c.add("invalid JSON", raw, MALFORMED_JSON)


def _not_objects(c: _Corpus) -> None:
    for n in range(60):
        tag = c.tag()
        raw = [json.dumps([tag, TEMPLATE]), json.dumps(tag), str(10**6 + n), "[]" if n == 3 else f'["{tag}"]',
               "true" if n == 4 else f'"{tag}"', "null" if n == 5 else f"{n}.5"][n % 6]
        c.add("not an object", raw, NOT_OBJECT)


def _wrong_types(c: _Corpus) -> None:
    values = {"s": [42, None, ["ETHUSDT"], {"s": "ETHUSDT"}, True],
              "t": ["1206419187", 1206419187.0, True, None, [1]],
              "p": [None, [1666.8], {"v": "1"}, True, False],
              "q": [None, ["26"], {}, True],
              "T": ["1675329600138", 1675329600138.5, None, False, {}],
              "E": ["1675329600141", 1.5e12, True, []],
              "m": ["false", 0, 1, None, "true", []]}
    reasons = {"s": NOT_SYMBOL, "t": "trade id (t) must be an integer",
               "p": "price (p) must be a decimal string or number", "q": "quantity (q) must be a decimal string or number",
               "T": "trade time (T) must be an integer", "E": "event time (E) must be an integer",
               "m": "buyer-is-maker flag (m) must be true or false"}
    for _ in range(4):
        for key, options in values.items():
            for value in options:
                c.add("wrong type", _dumps(c.trade(**{key: value})), reasons[key])
    for value in ("1.5.3", "12a", "0x1F", "", "1,5", "1e", "--1", "1_666.8", " 1666.8", "1666.8 ", "١٦٦٦"):
        for key in ("p", "q"):
            c.add("wrong type", _dumps(c.trade(**{key: value})), f"{NAMES[key]} is not a number")


def _missing_fields(c: _Corpus) -> None:
    required = ["s", "t", "p", "q", "T", "m"]
    for n in range(90):
        gone = c.rng.sample(required, c.rng.randrange(1, len(required) + 1))
        c.add("missing fields", _dumps(c.trade(**{key: ... for key in gone})), MISSING)
    for n in range(10):   # an envelope whose data is not an object is taken as the message itself
        c.add("missing fields", _dumps({"stream": "ethusdt@trade", "data": [TEMPLATE, n], "x": c.tag()}), MISSING)


def _nan_and_infinity(c: _Corpus) -> None:
    for token in ("NaN", "Infinity", "-Infinity", "1e999", "-1e999"):
        for key in ("p", "q", "T", "E", "t", "M", "x2"):
            for n in range(2):
                raw = _dumps(c.trade(**{key: "@"})).replace(b'"@"', token.encode())   # as a JSON token
                c.add("NaN or Infinity (JSON token)", raw, f"{NAMES.get(key, 'a value')} is not finite")
        raw = _dumps({"stream": "ethusdt@trade", "data": c.trade(p="@")}).replace(b'"@"', token.encode())
        c.add("NaN or Infinity (JSON token)", raw, "price (p) is not finite")
    for text in ("NaN", "nan", "Infinity", "-Infinity", "inf", "INF", "1e999", "-1e400"):
        for key in ("p", "q"):
            for n in range(2):
                c.add("NaN or Infinity (string)", _dumps(c.trade(**{key: text})), f"{NAMES[key]} is not finite")


def _not_positive(c: _Corpus) -> None:
    for value in ("0", "0.000", "-0", "-1666.8", "-0.00000001", 0, -3, -0.5, 0.0, "-1e-300", "0e10"):
        for key in ("p", "q"):
            for n in range(3):
                c.add("negative or zero price or size", _dumps(c.trade(**{key: value})), f"{NAMES[key]} must be positive")


def _absurd_numbers(c: _Corpus) -> None:
    for value in (2**63, 2**64, 10**30, 2**63 + 1206419187):
        for n in range(3):
            c.add("absurd number", _dumps(c.trade(t=value)), "trade id (t) is too large")
    for value in (-1, -1206419187, -(2**70)):
        c.add("absurd number", _dumps(c.trade(t=value)), "trade id (t) must not be negative")
    for value in ("1e16", "123456789012345678", 1e300, 10**20, "9.9e307"):
        for key in ("p", "q"):
            for n in range(2):
                c.add("absurd number", _dumps(c.trade(**{key: value})), f"{NAMES[key]} is too large")
    for key in ("p", "q"):   # a JSON integer beyond float's range (float() raises OverflowError)
        for n in range(3):
            c.add("absurd number", _dumps(c.trade(**{key: 10 ** (400 + n)})), f"{NAMES[key]} is not a number")


def _absurd_timestamps(c: _Corpus) -> None:
    ms = TEMPLATE["T"]
    values = [0, -1, -ms, 1, ms // 1000,                   # zero, negative, seconds instead of ms
              1_400_000_000_000,                           # 2014: before Binance
              YEAR_3000_MS, YEAR_3000_MS * 1000,           # year 3000 in ms and in µs
              ms * 1_000_000,                              # nanoseconds
              2**63 - 1, 2**64, 10**25,                    # beyond any clock
              99_999_999_999_999]                          # just below the µs threshold: ms in year 5138
    for value in values:
        for key in ("T", "E"):
            for n in range(3):
                c.add("absurd timestamp", _dumps(c.trade(**{key: value})), f"{NAMES[key]} is outside 2017-07-01 .. now+1 day")


def _megabytes(c: _Corpus) -> None:
    def padded(head: str, fill: str, tail: str = "", size: int = MEGABYTE) -> str:
        return head + fill * ((size - len(head) - len(tail)) // len(fill)) + tail

    tag = c.tag
    c.add("megabyte message", padded('{"x":"%s","e":"trade","pad":"' % tag(), "x", '"}'), TOO_LARGE)
    c.add("megabyte message", padded('{"x":"%s","s":"' % tag(), "ETHUSDT", '"}'), TOO_LARGE)
    c.add("megabyte message", padded('%s[' % tag(), "[", ""), TOO_LARGE)
    c.add("megabyte message", padded('{"x":"%s","p":"' % tag(), "9", '"}'), TOO_LARGE)
    c.add("megabyte message", padded('{"x":"%s","data":' % tag(), json.dumps(TEMPLATE) + ",", "}"), TOO_LARGE)
    c.add("megabyte message", ('{"x":"%s","pad":"' % tag()).encode() + b"\xff" * MEGABYTE + b'"}', TOO_LARGE)
    c.add("megabyte message", padded('{"x":"%s","pad":"' % tag(), "\u00e9\u20ac", '"}', MEGABYTE // 3), TOO_LARGE)
    c.add("megabyte message", padded('{"x":"%s","pad":"' % tag(), "y", '"}', 16 * 1024 + 1), TOO_LARGE)


def _symbols(c: _Corpus) -> None:
    for symbol in ("DOGEUSDT", "BTCUSDT", "ETHBTC", "XRPUSDT", "ETHUSDC", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "12",
                   "ETHUSDT0", "ETHUSD", "XRPETH1"):
        for n in range(6):
            c.add("unknown symbol", _dumps(c.trade(s=symbol)), UNKNOWN_SYMBOL)
    for symbol in ("ethusdt", "ETH-USDT", "ETH USDT", "", "E", "A" * 31, "\u0415THUSDT", "ETHUSDT\u0000",
                   "ETHUSDT\n", "ＥＴＨＵＳＤＴ", "ETH/USDT", "<script>"):
        for n in range(3):
            c.add("malformed symbol", _dumps(c.trade(s=symbol)), NOT_SYMBOL)


def _not_utf8(c: _Corpus) -> None:
    for n in range(12):
        for bad in (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"):
            raw = _dumps(c.trade()).replace(b'"trade"', b'"tr' + bad + b'ade"', 1)
            c.add("not UTF-8", raw, NOT_UTF8)
    for n in range(10):
        c.add("not UTF-8", json.dumps(c.trade(note="caf\u00e9"), ensure_ascii=False).encode("latin-1"), NOT_UTF8)
        c.add("not UTF-8", json.dumps(c.trade()).encode("utf-16"), NOT_UTF8)


def _deep_nesting(c: _Corpus) -> None:
    for depth in (9, 10, 12, 20, 50, 100, 500, 990, 1000, 1500, 3000, 5000, 8000):
        for shape in ("[%s]", '{"a":%s}'):
            inner = "1"
            for _ in range(depth):
                inner = shape % inner
            c.add("deeply nested JSON", '{"x":"%s","e":"trade","y":%s}' % (c.tag(), inner) if depth < 2000
                  else "[" * depth + '"%s"' % c.tag() + "]" * depth, TOO_DEEP)
    for n in range(10):
        c.add("deeply nested JSON", ('{"x":"%s","e":"trade","y":' % c.tag()) + "[" * 7000, TOO_DEEP)


def _event_types(c: _Corpus) -> None:
    for event in ("aggTrade", "depthUpdate", "kline", "24hrTicker", "TRADE", "", None, 1, ["trade"]):
        for n in range(6):
            c.add("unsupported event type", _dumps(c.trade(e=event)), EVENT_TYPE)


GENERATORS = (_invalid_json, _not_objects, _wrong_types, _missing_fields, _nan_and_infinity, _not_positive,
              _absurd_numbers, _absurd_timestamps, _megabytes, _symbols, _not_utf8, _deep_nesting, _event_types)


def corpus(seed: int = 8) -> list[Hostile]:
    """Stand-alone hostile messages, each with the kind of reason the parser must give."""
    c = _Corpus(seed)
    for generate in GENERATORS:
        generate(c)
    return c.items


# Mixing into real traffic -----------------------------------------------------------------------
def real_traffic() -> dict[str, list[dict]]:
    """The project's real trades, websocket-shaped: 1,000 ETHUSDT (2023) and 5,000 XRPETH (2019)."""
    from producer.sources import read_any
    from tests.conftest import sample_path

    return {"ETHUSDT": [json.loads(r.message) for r in read_any(sample_path("ETHUSDT-trades-2023-02-02.csv"))],
            "XRPETH": [json.loads(r.message) for r in read_any(sample_path("XRPETH-trades-2019-10-11.csv"))]}


@dataclass
class Mixed:
    partitions: list[list[tuple[bytes | None, bytes]]]       # per partition: (key, value) in order
    trades: dict = field(default_factory=dict)              # (symbol, trade_id) -> (price, qty, trade time ms)
    dead_letters: list[Hostile] = field(default_factory=list)
    messages: list[Hostile] = field(default_factory=list)   # every hostile message sent, corpus included


def _dressed(message: dict, rng: random.Random, variant: int) -> bytes:
    """The same trade in hostile but valid dress: the job must store it as it is."""
    if variant == 0:
        return _dumps({"stream": message["s"].lower() + "@trade", "data": message})
    if variant == 1:
        return _dumps({**message, "T": message["T"] * 1000 + 123, "E": message["E"] * 1000 + 456})   # µs
    if variant == 2:
        return _dumps({**message, "p": float(message["p"]), "q": float(message["q"])})             # numbers
    if variant == 3:
        keys = list(message)
        rng.shuffle(keys)
        return json.dumps({k: message[k] for k in keys}, indent=rng.choice([None, 2])).encode()     # order, spaces
    if variant == 4:   # the symbol with an escaped first letter
        symbol = message["s"]
        return _dumps(message).replace(f'"{symbol}"'.encode(), ('"\\u%04x%s"' % (ord(symbol[0]), symbol[1:])).encode())
    if variant == 5:
        return _dumps({**message, "extra": {"a": [1, {"b": [2, [3]]}]}, "note": "caf\u00e9 \U0001F4B0"})   # depth 5
    body = _dumps(message)   # padded to just under the size limit
    return body[:-1] + b',"pad":"' + b"z" * (16 * 1024 - len(body) - 9) + b'"}'


def mixed(real: dict[str, list[dict]], hostile: list[Hostile], seed: int = 8) -> Mixed:
    """Real trades of two symbols (symbol -> websocket messages in id order), each symbol on its own
    partition in its own order, with the hostile corpus and stream-dependent hostility mixed in.

    The second symbol's trades must be older than the first's: its partition then holds the job's
    watermark back, and the late trades, set a day before its first trade, are late for certain
    once both partitions have a watermark (placed after 60% of its trades)."""
    rng = random.Random(seed)
    (first, first_messages), (second, second_messages) = real.items()
    assert second_messages[0]["T"] < first_messages[0]["T"], "the second symbol must be the older one"
    out = Mixed(partitions=[[], []])
    next_id = len(hostile)

    def extra(kind: str, raw: bytes, outcome: str, stage: str = "", reason: str = "", message=None) -> Hostile:
        nonlocal next_id
        item = Hostile(next_id, kind, raw, outcome, stage, reason, message["s"], message["t"])
        next_id += 1
        out.messages.append(item)
        if outcome == "dead_letter" or stage:
            out.dead_letters.append(item)
        return item

    for partition, (symbol, messages) in enumerate(((first, first_messages), (second, second_messages))):
        stream = out.partitions[partition]
        key = symbol.encode()
        n = len(messages)
        swaps = set(rng.sample(range(50, n - 50, 7), 15))           # (i, i+1) sent as (i+1, i)
        busy = swaps | {i + 1 for i in swaps}
        dressed = set(rng.sample([i for i in range(n) if i not in busy], 60))
        busy |= dressed
        late = set(rng.sample([i for i in range(int(n * 0.6), n) if i not in busy], 20)) if partition == 1 else set()
        busy |= late
        # after trade i, trade j = i - 1 - k is sent again: each j once, never a trade treated otherwise
        repeats = {}
        for i in rng.sample([i for i in range(20, n) if i not in busy], 40):
            j = i - 1 - rng.randrange(10)
            if j not in busy and j not in repeats.values() and len(repeats) < 30:
                repeats[i] = j
        i = 0
        while i < n:
            message = messages[i]
            if i in swaps:
                later = messages[i + 1]
                stream.append((key, _dumps(later)))
                stream.append((key, _dumps(message)))
                out.trades[(symbol, later["t"])] = (float(later["p"]), float(later["q"]), later["T"])
                extra("out-of-order trade", _dumps(message), "dead_letter", "detect", REPEATED, message)
                i += 2
                continue
            if i in late:
                back = {**message, "T": second_messages[0]["T"] - 86_400_000, "E": second_messages[0]["E"] - 86_400_000}
                stream.append((key, _dumps(back)))
                extra("late trade", _dumps(back), "accepted", "bars", LATE, back)
                out.trades[(symbol, message["t"])] = (float(message["p"]), float(message["q"]), back["T"])
            elif i in dressed:
                raw = _dressed(message, rng, len(out.messages) % 7)
                stream.append((key, raw))
                extra("valid trade in hostile dress", raw, "accepted", message=message)
                out.trades[(symbol, message["t"])] = (float(message["p"]), float(message["q"]), message["T"])
            else:
                stream.append((key, _dumps(message)))
                out.trades[(symbol, message["t"])] = (float(message["p"]), float(message["q"]), message["T"])
            if i in repeats:
                earlier = messages[repeats[i]]
                stream.append((key, _dumps(earlier)))
                extra("duplicate trade", _dumps(earlier), "dead_letter", "detect", REPEATED, earlier)
            i += 1

    # The corpus, spread over both partitions at random places, keyed as a producer might or not at all.
    for item in hostile:
        partition = rng.randrange(2)
        stream = out.partitions[partition]
        key = rng.choice([None, b"ETHUSDT", b"junk", b"\xff"])
        stream.insert(rng.randrange(len(stream) + 1), (key, item.raw))
        out.messages.append(item)
        out.dead_letters.append(item)
    return out
