"""Parsing in batches: raw messages cross into Python as Arrow batches, and leave as one record per
symbol and batch.

Every record that crosses between Java and a Python operator costs several microseconds on each
side whatever it holds (docs/performance.md). Parsing used to take each message as a record and
give each trade back as one, which the scoring operator then took in again: three crossings per
trade. Here the messages reach Python in Arrow batches (a vectorized, "pandas" scalar function
of the Table API), and each batch's valid trades leave grouped by symbol, so the keyed scoring
operator takes a symbol's trades of a batch as one record, as columns (flink_jobs/trade_block.py).
A batch message (one symbol's trades in one Kafka message, trades.parse_message) gives its trades
to its symbol's group, or one dead letter.

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

import itertools
import pickle
import time
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np

from flink_jobs.canonical_trades import parse_batch
from flink_jobs.trade_block import pack, tuples_of
from flink_jobs.trades import InvalidTrade

# The key of a dead-letter row (no symbol is empty: config.SYMBOL_PATTERN); the job sends these
# rows to the store, past the timestamp assigner.
DEAD_LETTER_KEY = ""
# The event time of a row that is not a trade group: below any trade time.
NO_EVENT_TIME = -(2**63)
# A symbol's group of at least this many trades leaves as a trade block; a smaller one as a list of
# plain tuples: a block's fixed cost, about 5 µs to make and 3 to read, is more than the tuples of a
# few trades cost (a sparse symbol has one or two in a batch; docs/performance.md, "Sixteenth round").
BLOCK_MIN_TRADES = 16
# The scoring operator unpickles its input with cloudpickle, which reads the standard library's
# pickles; the standard pickler is several times faster.
PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL


class BatchColumns(NamedTuple):
    """The output of one batch, one entry per input message: the key (symbol, DEAD_LETTER_KEY or
    None), the pickled payload (a symbol's trades as one trade block or, fewer than BLOCK_MIN_TRADES,
    a list of plain tuples; or a store record), the event time; how many trades were parsed and how
    many messages rejected."""
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
    if not isinstance(raws, Sequence):
        raws = list(raws)
    # One "now" for the batch's window of plausible times, for both paths.
    parsed = parse_batch(raws, accepts, int(time.time() * 1000))
    keys: list = [None] * len(raws)
    payloads: list = [None] * len(raws)
    event_times: list = [NO_EVENT_TIME] * len(raws)
    for row in sorted(parsed.errors):
        error = parsed.errors[row]
        raw = "" if raws[row] is None else raws[row]   # a Kafka record without a value (a tombstone)
        if on_rejected is not None:
            on_rejected(error, raw)
        keys[row] = DEAD_LETTER_KEY
        payloads[row] = pickle.dumps(dead_letter(str(error), raw), protocol=PICKLE_PROTOCOL)
    trades = parsed.trades
    if trades.size:
        earliest = int(trades.trade_times.min())
        # Each symbol's trades together, in message order (a stable sort), as one block.
        order = np.argsort(parsed.codes, kind="stable")
        codes, rows, grouped = parsed.codes[order], parsed.rows[order], trades.take(order)
        bounds = (np.flatnonzero(codes[1:] != codes[:-1]) + 1).tolist()
        groups = list(zip([0] + bounds, bounds + [len(codes)]))
        # The small groups' trades as tuples, made together (one by one, the arrays' fixed costs
        # would be paid per group), and only theirs.
        sizes = np.diff([0] + bounds + [len(codes)])
        small = np.flatnonzero(np.repeat(sizes < BLOCK_MIN_TRADES, sizes))
        as_tuples = iter(tuples_of(parsed.names, codes[small], grouped.take(small)))
        row_of, code_of = rows.tolist(), codes.tolist()
        for start, end in groups:
            row = row_of[end - 1]   # the symbol's last message in the batch
            keys[row] = parsed.names[code_of[start]]
            if end - start >= BLOCK_MIN_TRADES:
                group = pack(grouped.take(slice(start, end)))
            else:
                group = list(itertools.islice(as_tuples, end - start))
            payloads[row] = pickle.dumps(group, protocol=PICKLE_PROTOCOL)
            event_times[row] = earliest
    return BatchColumns(keys, payloads, event_times, trades.size, len(parsed.errors))

