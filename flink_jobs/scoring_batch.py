"""The scoring micro-batch as columns: a symbol's trades of one call and their features, together.

The scoring operator (operators.ScoreTrades) used to hold each waiting trade as a pair of named
tuples, made per trade, taken apart again per trade for the model's matrix, the decision and the
trades table's Arrow columns: about half of its 25 µs a trade (docs/performance.md, "Fifteenth
round"). A Chunk keeps what one call brought as the parser sent it (the trades' columns,
flink_jobs/trade_block.py) beside the compiled loop's feature matrix, so a flush concatenates
arrays; tuples are made only where a trade is needed as one (the few a method may fire for,
methods.candidate_rows; a dead letter; a small batch's rows).

A Chunk also sits in its symbol's keyed record while it waits (scoring_state.SymbolRecord), so a
checkpoint holds it: it pickles as a trade block and the matrix's bytes.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from flink_jobs.features.symbol_state import FEATURE_COUNT, HISTORY, TradeFeatures, kernel
from flink_jobs.state_pickling import StdlibPickled
from flink_jobs.trade_block import TradeColumns, from_tuples, pack, unpack
from flink_jobs.trades import Trade

OUT_COLUMNS = kernel.OUT_COLUMNS


class Chunk(StdlibPickled):
    """One symbol's trades (as columns, arrival order) and their features (an (n, OUT_COLUMNS)
    float matrix, TradeFeatures' fields per row)."""

    __slots__ = ("symbol", "columns", "features", "_trades")

    def __init__(self, symbol: str, columns: TradeColumns, features: np.ndarray, trades: list | None = None):
        self.symbol = symbol
        self.columns = columns
        self.features = features
        self._trades = trades   # the same trades as plain tuples, when at hand

    @classmethod
    def from_pairs(cls, symbol: str, pairs: list) -> "Chunk":
        """A chunk of (Trade, TradeFeatures) pairs: how earlier versions kept waiting trades."""
        return cls(symbol, from_tuples([trade for trade, _ in pairs]),
                   np.array([tuple(features) for _, features in pairs], dtype=np.float64).reshape(-1, OUT_COLUMNS))

    def __len__(self) -> int:
        return len(self.features)

    @property
    def trades(self) -> list:
        """The trades as plain tuples in Trade's field order, made when first asked for."""
        if self._trades is None:
            self._trades = self.columns.tuples(self.symbol)
        return self._trades

    def rows(self, start: int, stop: int) -> "Chunk":
        """The trades from `start` up to `stop`."""
        return Chunk(self.symbol, self.columns.take(slice(start, stop)), self.features[start:stop],
                     None if self._trades is None else self._trades[start:stop])

    def keep(self, rows: np.ndarray) -> "Chunk":
        """The chunk of the rows where `rows` (a boolean mask) is true."""
        kept = None if self._trades is None else [t for t, keep in zip(self._trades, rows.tolist()) if keep]
        return Chunk(self.symbol, self.columns.take(rows), self.features[rows], kept)

    def trade(self, row: int) -> Trade:
        return self.columns.trade(self.symbol, row)

    def trade_features(self, row: int) -> TradeFeatures:
        values = self.features[row].tolist()
        values[HISTORY] = int(values[HISTORY])
        return TradeFeatures._make(values)

    def trade_ids(self) -> list[int]:
        return self.columns.ids.tolist()

    def __getstate__(self):
        return self.symbol, pack(self.columns), self.features.tobytes()

    def __setstate__(self, state):
        self.symbol, trades, features = state
        # The sixteenth round's chunks hold a trade block; the fifteenth's, the trades as tuples.
        self.columns = unpack(trades) if isinstance(trades, bytes) else from_tuples(trades)
        self.features = np.frombuffer(features, dtype=np.float64).reshape(-1, OUT_COLUMNS)
        self._trades = None


class Batch:
    """Chunks of several symbols scored together, as one set of rows in arrival order."""

    def __init__(self, chunks: list[Chunk]):
        self.chunks = chunks
        self.lengths = [len(c) for c in chunks]
        self.ends = np.cumsum(self.lengths)
        self.features = chunks[0].features if len(chunks) == 1 else np.concatenate([c.features for c in chunks])
        self.rows = int(self.ends[-1]) if chunks else 0

    def model_input(self) -> np.ndarray:
        """The model's input columns (FEATURE_NAMES order), as float32 rows."""
        return np.ascontiguousarray(self.features[:, :FEATURE_COUNT], dtype=np.float32)

    def per_row(self, values: list) -> np.ndarray:
        """One value per chunk, repeated for each of its rows."""
        return np.repeat(np.asarray(values), self.lengths)

    def locate(self, row: int) -> tuple[Chunk, int]:
        """The chunk holding a row of the batch, and the row's index in it."""
        at = int(np.searchsorted(self.ends, row, side="right"))
        return self.chunks[at], row - (int(self.ends[at - 1]) if at else 0)

    def column(self, name: str) -> np.ndarray:
        """One of the chunks' columns (a TradeColumns field) over the whole batch."""
        if len(self.chunks) == 1:
            return getattr(self.chunks[0].columns, name)
        return np.concatenate([getattr(c.columns, name) for c in self.chunks])

    def trades(self) -> list:
        """The trades' tuples, in the batch's order."""
        if len(self.chunks) == 1:
            return self.chunks[0].trades
        out: list = []
        for chunk in self.chunks:
            out += chunk.trades
        return out

    def symbols(self) -> pa.Array:
        """The symbol of each row, as an Arrow string array: made from a Python list of strings it
        took 0.5 µs a row, taken from the batch's few distinct symbols by index 0.08."""
        names = {chunk.symbol: None for chunk in self.chunks}
        index = {symbol: i for i, symbol in enumerate(names)}
        rows = self.per_row([index[chunk.symbol] for chunk in self.chunks]).astype(np.int32)
        return pa.array(list(names), type=pa.string()).take(pa.array(rows))
