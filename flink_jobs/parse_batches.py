"""Parsing in batches: raw messages cross into Python as Arrow batches, and leave as one record per
symbol and batch.

Every record that crosses between Java and a Python operator costs several microseconds on each
side whatever it holds (docs/performance.md). Parsing used to take each message as a record and
give each trade back as one, which the scoring operator then took in again: three crossings per
trade. Here the messages reach Python in Arrow batches (a vectorized, "pandas" scalar function
of the Table API), and each batch's valid trades leave grouped by symbol, so the keyed scoring
operator takes a symbol's trades of a batch as one record. A batch message (one symbol's trades in
one Kafka message, trades.parse_message) gives its trades to its symbol's group, or one dead letter.

A scalar function returns one row per input row; `group_batch` puts each symbol's group at the
row of the symbol's last message in the batch, each invalid message's dead letter at its own row,
and nothing at the other rows, which a filter in Java drops. A symbol's trades keep their order,
within a batch and across batches.

Each group's event time is the earliest trade time of the batch's valid trades, not the group's
own latest: the watermark behind it must not pass a trade of a group emitted later in the same
batch. A trade is thus late for its bar only if it would have been late when trades crossed one
by one. The price: the watermark follows each batch's earliest trade. With trades roughly in
order that lags by a batch's span of event time; a symbol whose trades run behind the others'
(a backfill) holds every symbol's bars back by its lag, where one by one its trades would have
been late for theirs. Invalid messages never move the watermark: they are parsed before the
timestamp assigner, and the job splits their rows off before it (anomaly_job.parse_in_batches),
so a partition carrying only bad messages still goes idle.
"""
from __future__ import annotations

import pickle
import time
from typing import Callable, Iterable, NamedTuple, Sequence

from flink_jobs.canonical_trades import parse_messages
from flink_jobs.trades import InvalidTrade

# The key of a dead-letter row (no symbol is empty: config.SYMBOL_PATTERN); the job sends these
# rows to the store, past the timestamp assigner.
DEAD_LETTER_KEY = ""
# The event time of a row that is not a trade group: below any trade time.
NO_EVENT_TIME = -(2**63)
# The scoring operator unpickles its input with cloudpickle, which reads the standard library's
# pickles; the standard pickler writes a list of plain tuples several times faster.
PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL


class BatchColumns(NamedTuple):
    """The output of one batch, one entry per input message: the key (symbol, DEAD_LETTER_KEY or
    None), the pickled payload (a list of trade tuples, or a store record), the event time; how
    many trades were parsed and how many messages rejected."""
    keys: list
    payloads: list
    event_times: list
    parsed: int
    rejected: int


def group_batch(raws: Iterable, accepts: Callable[[str], bool],
                dead_letter: Callable[[str, bytes | str], tuple],
                on_rejected: Callable[[InvalidTrade, bytes | str], None] | None = None) -> BatchColumns:
    """Parses a batch of raw messages; see the module's docstring for what comes out where.

    `dead_letter(reason, raw)` builds the store record for an invalid message, `on_rejected` is
    told about each (for logs)."""
    keys: list = []
    payloads: list = []
    trades_by_symbol: dict[str, list] = {}
    last_row: dict[str, int] = {}
    earliest = None
    rejected = 0
    if not isinstance(raws, Sequence):
        raws = list(raws)
    # One "now" for the batch's window of plausible times, for both paths.
    results = parse_messages(raws, accepts, int(time.time() * 1000))
    parsed = 0
    for row, result in enumerate(results):
        keys.append(None)
        payloads.append(None)
        kind = type(result)
        if kind is tuple:
            trades = (result,)
        elif kind is list:   # a batch message: one symbol's trades
            trades = result
        else:
            rejected += 1
            raw = "" if raws[row] is None else raws[row]   # a Kafka record without a value (a tombstone)
            if on_rejected is not None:
                on_rejected(result, raw)
            keys[row] = DEAD_LETTER_KEY
            payloads[row] = pickle.dumps(dead_letter(str(result), raw), protocol=PICKLE_PROTOCOL)
            continue
        # Plain tuples: cloudpickle would pickle a named tuple's class by reference with every
        # record. ScoreTrades names the fields again.
        symbol = trades[0][0]
        trades_by_symbol.setdefault(symbol, []).extend(trades)
        last_row[symbol] = row
        parsed += len(trades)
        first = min(trade[4] for trade in trades) if kind is list else trades[0][4]
        if earliest is None or first < earliest:
            earliest = first
    event_times = [NO_EVENT_TIME] * len(keys)
    for symbol, row in last_row.items():
        keys[row] = symbol
        payloads[row] = pickle.dumps(trades_by_symbol[symbol], protocol=PICKLE_PROTOCOL)
        event_times[row] = earliest
    return BatchColumns(keys, payloads, event_times, parsed, rejected)
