"""A symbol's trades as columns in one bytes object: what the parser hands the scoring operator.

The parser used to send each symbol's trades of a batch as a pickled list of plain tuples: it made a
tuple per trade out of the columns Arrow had parsed, pickled them (0.6-0.8 µs a trade), the scoring
operator unpickled them (0.5-0.6) and took them apart into arrays again for the compiled features
(docs/performance.md, "Sixteenth round"). A block keeps the columns: each one's bytes, one after
the other, in Trade's field order without the symbol (the record's key is the symbol). Reading
one back costs a copy of the bytes, whatever the number of trades. Tuples are made only where a
trade is needed as one (a dead letter, a candidate, the bars of a sparse symbol, a small batch).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from flink_jobs.trades import Trade


class TradeColumns(NamedTuple):
    """Trades' fields as arrays, one entry per trade (Trade's order, without the symbol)."""
    ids: np.ndarray          # int64
    prices: np.ndarray       # float64
    qtys: np.ndarray         # float64
    trade_times: np.ndarray  # int64, epoch ms
    event_times: np.ndarray  # int64, epoch ms
    makers: np.ndarray       # bool

    @property
    def size(self) -> int:
        """How many trades (len() is the number of columns, as for any tuple)."""
        return len(self.ids)

    def take(self, rows) -> "TradeColumns":
        """The columns at `rows` (a slice, a boolean mask or indices)."""
        return TradeColumns(*(column[rows] for column in self))

    def tuples(self, symbol: str) -> list[tuple]:
        """The trades as plain tuples in Trade's field order, with Python's types."""
        return list(zip([symbol] * self.size, *(column.tolist() for column in self)))

    def trade(self, symbol: str, row: int) -> Trade:
        """One trade, with Python's types."""
        return Trade(symbol, *(column[row].item() for column in self))


def tuples_of(names: list, codes: np.ndarray, columns: TradeColumns) -> list[tuple]:
    """Trades of several symbols as plain tuples in Trade's field order, each symbol given by its
    code in `names`."""
    return list(zip(map(names.__getitem__, codes.tolist()), *(column.tolist() for column in columns)))


# A block is little-endian whatever machine wrote it (a checkpoint holds blocks); the arrays are
# in the machine's own order, as the compiled features take them.
WIRE_DTYPES = (np.dtype("<i8"), np.dtype("<f8"), np.dtype("<f8"), np.dtype("<i8"), np.dtype("<i8"), np.dtype("?"))
DTYPES = tuple(dtype.newbyteorder("=") for dtype in WIRE_DTYPES)
BYTES_PER_TRADE = sum(dtype.itemsize for dtype in WIRE_DTYPES)


def pack(columns: Sequence[np.ndarray]) -> bytes:
    """The columns (TradeColumns' order, equal lengths) as one block."""
    return b"".join(np.asarray(column, dtype=dtype).tobytes() for column, dtype in zip(columns, WIRE_DTYPES))


def unpack(block: bytes) -> TradeColumns:
    """A block's columns: writable arrays over one copy of its bytes."""
    count, extra = divmod(len(block), BYTES_PER_TRADE)
    if extra:
        raise ValueError(f"a trade block of {len(block)} bytes is not whole trades of {BYTES_PER_TRADE}")
    buffer = bytearray(block)
    columns, offset = [], 0
    for wire, native in zip(WIRE_DTYPES, DTYPES):
        column = np.frombuffer(buffer, dtype=wire, count=count, offset=offset)
        columns.append(column if wire == native else column.astype(native))
        offset += count * wire.itemsize
    return TradeColumns(*columns)


def from_tuples(trades: Sequence) -> TradeColumns:
    """Columns of trades given as Trade or plain tuples in its field order."""
    if not trades:
        return TradeColumns(*(np.empty(0, dtype=dtype) for dtype in DTYPES))
    _, *fields = zip(*trades)
    return TradeColumns(*(np.array(values, dtype=dtype) for values, dtype in zip(fields, DTYPES)))


def concatenate(parts: Sequence[TradeColumns]) -> TradeColumns:
    """The parts' trades one after the other."""
    if len(parts) == 1:
        return parts[0]
    return TradeColumns(*(np.concatenate(columns) for columns in zip(*parts)))


def block_of(trades: Sequence) -> bytes:
    """The block of trades given as Trade or plain tuples (what the parser sends for them)."""
    return pack(from_tuples(trades))
