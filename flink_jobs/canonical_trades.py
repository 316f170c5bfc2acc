"""Parsing a batch of messages at once, for the messages in the one shape every trade arrives in.

parse_trade takes about 12 µs a message in Python (json.loads, then a dozen checks, each a call):
at the job's pace that was a quarter of a Python worker (docs/performance.md, twelfth round). But
the messages the job reads are not arbitrary JSON: Binance's trade stream and this project's
producer both write compact objects with the same keys in the same order,

    {"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}

so a whole Arrow batch of them can be matched against that shape by one regular expression (RE2,
in C, pyarrow.compute.extract_regex), its numbers converted by Arrow's casts, and every bound
parse_trade checks held against whole columns at once: a batch of 10,000 is parsed and grouped
by symbol (parse_batches.group_batch) in 2.2 µs a message instead of 12.4.

A message takes this path only when the result cannot differ from parse_trade's: the pattern
admits nothing json.loads would read differently (ASCII only, no whitespace or escapes, no
repeated keys, integers without a sign or leading zeros and short enough for int64, decimals
without sign or exponent), and a row that fails any later check (an unknown symbol, a price of
zero, a timestamp out of range) goes to parse_trade like every message of another shape, so its
reason stays exactly parse_trade's. tests/test_canonical_trades.py holds the two to the same answers.

A batch message (trades.parse_message) takes this path when it is `[` + canonical objects joined by
`,` + `]`: split at `},{` (which no canonical object holds inside), its pieces are matched like
single messages, and the message is accepted when every piece passes and all are one symbol. Any
other batch message goes whole to parse_message, whose reason it keeps.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flink_jobs.trades import (EARLIEST_TRADE_MS, MAX_BATCH_MESSAGE_CHARS, MAX_DECIMAL, MAX_FUTURE_MS,
                               MICROSECONDS_ABOVE, InvalidTrade, is_batch_message, parse_message)

# A JSON integer as json.loads reads it, no sign, at most 18 digits: below MAX_TRADE_ID (2**63 - 1),
# so Arrow's cast to int64 never overflows.
_INTEGER = r"(?:0|[1-9][0-9]{0,17})"
# A decimal string that DECIMAL (trades.py) accepts; 20 digits before the point keep it finite.
_DECIMAL = r"[0-9]{1,20}(?:\.[0-9]{1,20})?"
# The inside of a canonical trade object, between its braces.
_FIELDS = (
    r'"e":"trade","E":(?P<E>' + _INTEGER + r'),"s":"(?P<s>[A-Z0-9]{2,30})","t":(?P<t>' + _INTEGER
    + r'),"p":"(?P<p>' + _DECIMAL + r')","q":"(?P<q>' + _DECIMAL + r')","T":(?P<T>' + _INTEGER
    + r'),"m":(?P<m>true|false)(?:,"M":(?:true|false))?')
CANONICAL_TRADE = r'^\{' + _FIELDS + r'\}$'
# A piece of a batch message split at "},{", its outer "[{" and "}]" cut off: the inside of an object.
CANONICAL_PIECE = r'^' + _FIELDS + r'$'


def parse_messages(raws: Sequence, accepts_symbol: Callable[[str], bool], now_ms: int) -> list:
    """Per message, in order: its trade as a plain tuple (Trade's fields), a batch message's trades
    as a list of them, or the InvalidTrade parse_message raises for it. `raws` holds bytes, text or
    None (a Kafka record without a value)."""
    results = _parse_canonical(raws, accepts_symbol, now_ms)
    for row, result in enumerate(results):
        if result is None:
            results[row] = _parse_one(raws[row], accepts_symbol, now_ms)
    return results


def _parse_one(raw, accepts_symbol: Callable[[str], bool], now_ms: int):
    if raw is None:
        return InvalidTrade("empty message", "the record has no value")
    try:
        trades = parse_message(raw, accepts_symbol, now_ms)
    except InvalidTrade as error:
        return error
    return [tuple(trade) for trade in trades] if is_batch_message(raw) else tuple(trades[0])


def _parse_canonical(raws: Sequence, accepts_symbol: Callable[[str], bool], now_ms: int) -> list:
    """Per message, its trade tuple (or its list of trade tuples) when it has the canonical shape and
    passes every check, else None."""
    try:
        # bytes from Kafka make a binary array, text from files a string one; a batch of both does
        # not convert, and goes one by one.
        messages = pa.array(raws, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):
        return [None] * len(raws)
    if not (pa.types.is_binary(messages.type) or pa.types.is_string(messages.type)):
        return [None] * len(raws)   # all None (an all-null array), or not messages at all
    results: list = [None] * len(raws)
    rows, trades = _checked_trades(messages, CANONICAL_TRADE, accepts_symbol, now_ms)
    for row, trade in zip(rows, trades):
        results[row] = trade
    _parse_canonical_batches(raws, pa.types.is_binary(messages.type), results, accepts_symbol, now_ms)
    return results


def _parse_canonical_batches(raws: Sequence, binary: bool, results: list, accepts_symbol: Callable[[str], bool],
                             now_ms: int) -> None:
    """Fills in the results of the batch messages made of canonical objects of one symbol."""
    opening, separator, closing = (b"[{", b"},{", b"}]") if binary else ("[{", "},{", "}]")
    arrays, pieces, starts = [], [], []
    for row, raw in enumerate(raws):
        if raw is not None and raw[:2] == opening and raw[-2:] == closing and len(raw) <= MAX_BATCH_MESSAGE_CHARS:
            arrays.append(row)
            starts.append(len(pieces))
            pieces.extend(raw[2:-2].split(separator))
    if not arrays:
        return
    starts.append(len(pieces))
    trades: list = [None] * len(pieces)
    rows, checked = _checked_trades(pa.array(pieces), CANONICAL_PIECE, accepts_symbol, now_ms)
    for row, trade in zip(rows, checked):
        trades[row] = trade
    for number, row in enumerate(arrays):
        batch = trades[starts[number]:starts[number + 1]]
        if None not in batch and len({trade[0] for trade in batch}) == 1:
            results[row] = batch


def _checked_trades(texts: pa.Array, pattern: str, accepts_symbol: Callable[[str], bool],
                    now_ms: int) -> tuple[list, list]:
    """The texts matching `pattern` that pass every check: (their positions, their trade tuples)."""
    fields = pc.extract_regex(texts, pattern)
    matched = fields.is_valid()
    rows = np.flatnonzero(matched.to_numpy(zero_copy_only=False))
    if not len(rows):
        return [], []
    # Only the matched rows: an unmatched row's struct is null, but its fields hold empty strings.
    fields = fields.filter(matched)

    def column(name: str, to: pa.DataType) -> np.ndarray:
        return pc.cast(pc.cast(fields.field(name), pa.string()), to).to_numpy(zero_copy_only=False)

    trade_ids = column("t", pa.int64())
    prices, qtys = column("p", pa.float64()), column("q", pa.float64())
    trade_times, event_times = _epoch_ms(column("T", pa.int64())), _epoch_ms(column("E", pa.int64()))
    symbols = pc.dictionary_encode(pc.cast(fields.field("s"), pa.string()))
    names = symbols.dictionary.to_pylist()
    accepted = np.array([accepts_symbol(name) for name in names], dtype=bool)
    codes = symbols.indices.to_numpy(zero_copy_only=False)
    latest = now_ms + MAX_FUTURE_MS
    ok = (accepted[codes] & (prices > 0) & (prices <= MAX_DECIMAL) & (qtys > 0) & (qtys <= MAX_DECIMAL)
          & (trade_times >= EARLIEST_TRADE_MS) & (trade_times <= latest)
          & (event_times >= EARLIEST_TRADE_MS) & (event_times <= latest))
    makers = pc.equal(pc.cast(fields.field("m"), pa.string()), "true").to_numpy(zero_copy_only=False)
    trades = zip(map(names.__getitem__, codes.tolist()), trade_ids.tolist(), prices.tolist(), qtys.tolist(),
                 trade_times.tolist(), event_times.tolist(), makers.tolist())
    good_rows, good_trades = [], []
    for row, trade, good in zip(rows.tolist(), trades, ok.tolist()):
        if good:
            good_rows.append(row)
            good_trades.append(trade)
    return good_rows, good_trades


def _epoch_ms(values: np.ndarray) -> np.ndarray:
    """normalize_epoch_ms (trades.py) over a column: microseconds to milliseconds."""
    return np.where(values >= MICROSECONDS_ABOVE, values // 1000, values)
