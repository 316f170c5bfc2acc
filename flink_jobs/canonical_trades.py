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

The trades come out as columns (parse_batch), the way Arrow parsed them: the parser sends a busy
symbol's trades on as one block of them (flink_jobs/trade_block.py) without a tuple per trade.
parse_messages gives the same per message, as tuples.
"""
from __future__ import annotations

import itertools
import operator
from typing import Callable, NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flink_jobs.trades import (EARLIEST_TRADE_MS, MAX_BATCH_MESSAGE_CHARS, MAX_DECIMAL, MAX_FUTURE_MS,
                               MICROSECONDS_ABOVE, InvalidTrade, is_batch_message, parse_message)
from flink_jobs.trade_block import TradeColumns, concatenate, from_tuples, tuples_of

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


class ParsedBatch(NamedTuple):
    """A batch of messages parsed: its valid trades as columns, in message order (a batch message's
    trades in their own order), the message and symbol of each, and each invalid message's error."""
    rows: np.ndarray       # int64: the message each trade came from, non-decreasing
    names: list            # symbols; `codes` index it
    codes: np.ndarray      # int64: each trade's symbol
    trades: TradeColumns
    errors: dict           # message row -> the InvalidTrade parse_message raises for it

    def tuples(self) -> list[tuple]:
        """The trades as plain tuples in Trade's field order."""
        return tuples_of(self.names, self.codes, self.trades)


class _Part(NamedTuple):
    rows: np.ndarray
    names: list
    codes: np.ndarray
    trades: TradeColumns


def parse_batch(raws: Sequence, accepts_symbol: Callable[[str], bool], now_ms: int) -> ParsedBatch:
    """The batch's trades and errors; `raws` holds bytes, text or None (a Kafka record without a
    value). Messages of the canonical shapes are parsed as columns, every other one by
    parse_message, whose reason an invalid one keeps."""
    parts: list[_Part] = []
    resolved = np.zeros(len(raws), dtype=bool)
    messages = _arrow_messages(raws)
    if messages is not None:
        for part in (_checked_trades(messages, CANONICAL_TRADE, accepts_symbol, now_ms),
                     _canonical_batches(raws, pa.types.is_binary(messages.type), accepts_symbol, now_ms)):
            if part is not None:
                parts.append(part)
                resolved[part.rows] = True
    errors: dict = {}
    rows: list = []
    trades: list = []
    for row in np.flatnonzero(~resolved).tolist():
        result = _parse_one(raws[row], accepts_symbol, now_ms)
        if isinstance(result, InvalidTrade):
            errors[row] = result
        else:
            rows += [row] * len(result)
            trades += result
    if trades:
        names = list(dict.fromkeys(trade[0] for trade in trades))
        code = {name: i for i, name in enumerate(names)}
        parts.append(_Part(np.array(rows, dtype=np.int64), names,
                           np.array([code[trade[0]] for trade in trades], dtype=np.int64), from_tuples(trades)))
    return _combined(parts, errors)


def parse_messages(raws: Sequence, accepts_symbol: Callable[[str], bool], now_ms: int) -> list:
    """parse_batch per message, in order: its trade as a plain tuple (Trade's fields), a batch
    message's trades as a list of them, or the InvalidTrade parse_message raises for it."""
    parsed = parse_batch(raws, accepts_symbol, now_ms)
    results: list = [None] * len(raws)
    for row, error in parsed.errors.items():
        results[row] = error
    for row, group in itertools.groupby(zip(parsed.rows.tolist(), parsed.tuples()), key=operator.itemgetter(0)):
        trades = [trade for _, trade in group]
        results[row] = trades if is_batch_message(raws[row]) else trades[0]
    return results


def _parse_one(raw, accepts_symbol: Callable[[str], bool], now_ms: int):
    """A message's trades as a list of plain tuples, or the InvalidTrade parse_message raises."""
    if raw is None:
        return InvalidTrade("empty message", "the record has no value")
    try:
        return [tuple(trade) for trade in parse_message(raw, accepts_symbol, now_ms)]
    except InvalidTrade as error:
        return error


def _arrow_messages(raws: Sequence) -> pa.Array | None:
    """The messages as one Arrow binary or string array, or None where they do not make one."""
    try:
        # bytes from Kafka make a binary array, text from files a string one; a batch of both does
        # not convert, and goes one by one.
        messages = pa.array(raws, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):
        return None
    if not (pa.types.is_binary(messages.type) or pa.types.is_string(messages.type)):
        return None   # all None (an all-null array), or not messages at all
    return messages


def _canonical_batches(raws: Sequence, binary: bool, accepts_symbol: Callable[[str], bool],
                       now_ms: int) -> _Part | None:
    """The trades of the batch messages made of canonical objects that all pass and are of one symbol."""
    opening, separator, closing = (b"[{", b"},{", b"}]") if binary else ("[{", "},{", "}]")
    arrays, pieces, starts = [], [], []
    for row, raw in enumerate(raws):
        if raw is not None and raw[:2] == opening and raw[-2:] == closing and len(raw) <= MAX_BATCH_MESSAGE_CHARS:
            arrays.append(row)
            starts.append(len(pieces))
            pieces.extend(raw[2:-2].split(separator))
    if not arrays:
        return None
    checked = _checked_trades(pa.array(pieces), CANONICAL_PIECE, accepts_symbol, now_ms)
    if checked is None:
        return None
    sizes = np.diff(np.append(starts, len(pieces)))
    message = np.repeat(np.arange(len(arrays)), sizes)[checked.rows]   # of each passing piece, non-decreasing
    whole = np.bincount(message, minlength=len(arrays)) == sizes
    # One symbol: the least and greatest symbol code of each message's passing pieces agree.
    firsts = np.flatnonzero(np.diff(message, prepend=-1))
    present = message[firsts]
    one_symbol = np.zeros(len(arrays), dtype=bool)
    one_symbol[present] = (np.minimum.reduceat(checked.codes, firsts) == np.maximum.reduceat(checked.codes, firsts))
    keep = (whole & one_symbol)[message]
    return _Part(np.asarray(arrays, dtype=np.int64)[message[keep]], checked.names, checked.codes[keep],
                 checked.trades.take(keep))


def _checked_trades(texts: pa.Array, pattern: str, accepts_symbol: Callable[[str], bool],
                    now_ms: int) -> _Part | None:
    """The texts matching `pattern` that pass every check: their positions and trades; None if none."""
    fields = pc.extract_regex(texts, pattern)
    matched = fields.is_valid()
    rows = np.flatnonzero(matched.to_numpy(zero_copy_only=False))
    if not len(rows):
        return None
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
    codes = symbols.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    latest = now_ms + MAX_FUTURE_MS
    ok = np.flatnonzero(accepted[codes] & (prices > 0) & (prices <= MAX_DECIMAL) & (qtys > 0) & (qtys <= MAX_DECIMAL)
                        & (trade_times >= EARLIEST_TRADE_MS) & (trade_times <= latest)
                        & (event_times >= EARLIEST_TRADE_MS) & (event_times <= latest))
    if not len(ok):
        return None
    makers = pc.equal(pc.cast(fields.field("m"), pa.string()), "true").to_numpy(zero_copy_only=False)
    return _Part(rows[ok], names, codes[ok],
                 TradeColumns(trade_ids[ok], prices[ok], qtys[ok], trade_times[ok], event_times[ok], makers[ok]))


def _combined(parts: list[_Part], errors: dict) -> ParsedBatch:
    """The parts' trades as one set, by message, with one list of symbols."""
    if not parts:
        return ParsedBatch(np.empty(0, dtype=np.int64), [], np.empty(0, dtype=np.int64),
                           from_tuples(()), errors)
    if len(parts) == 1:
        (part,) = parts
        return ParsedBatch(part.rows, part.names, part.codes, part.trades, errors)
    names: dict = {}
    codes = []
    for part in parts:
        recode = np.array([names.setdefault(name, len(names)) for name in part.names], dtype=np.int64)
        codes.append(recode[part.codes])
    rows = np.concatenate([part.rows for part in parts])
    order = np.argsort(rows, kind="stable")   # each part's trades keep their order within a message
    return ParsedBatch(rows[order], list(names), np.concatenate(codes)[order],
                       concatenate([part.trades for part in parts]).take(order), errors)


def _epoch_ms(values: np.ndarray) -> np.ndarray:
    """normalize_epoch_ms (trades.py) over a column: microseconds to milliseconds."""
    return np.where(values >= MICROSECONDS_ABOVE, values // 1000, values)
