"""The scoring micro-batch as columns: a symbol's trades of one call and their features, together.

The scoring operator (operators.ScoreTrades) used to hold each waiting trade as a pair of named
tuples, made per trade, taken apart again per trade for the model's matrix, the decision and the
trades table's Arrow columns: about half of its 25 µs a trade (docs/performance.md, "Fifteenth
round"). A Chunk keeps what one call brought as the parser sent it (plain tuples) beside their
columns and the compiled loop's feature matrix, so a flush concatenates arrays; named tuples are
made only for the few trades a method may fire for (methods.candidate_rows).

A Chunk also sits in its symbol's keyed record while it waits (scoring_state.SymbolRecord), so a
checkpoint holds it: it pickles as the tuples and the matrix's bytes, its columns made again when
it is read back.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from flink_jobs.features.symbol_state import FEATURE_COUNT, HISTORY, TradeFeatures, kernel, trade_arrays
from flink_jobs.state_pickling import StdlibPickled
from flink_jobs.trades import Trade

OUT_COLUMNS = kernel.OUT_COLUMNS


class Chunk(StdlibPickled):
    """One symbol's trades (plain tuples in Trade's field order, arrival order), their columns and
    their features (an (n, OUT_COLUMNS) float matrix, TradeFeatures' fields per row)."""

    __slots__ = ("symbol", "trades", "features", "_columns")

    def __init__(self, symbol: str, trades: list, features: np.ndarray, columns: tuple | None = None):
        self.symbol = symbol
        self.trades = trades
        self.features = features
        self._columns = columns

    @classmethod
    def from_pairs(cls, symbol: str, pairs: list) -> "Chunk":
        """A chunk of (Trade, TradeFeatures) pairs: how earlier versions kept waiting trades."""
        return cls(symbol, [tuple(trade) for trade, _ in pairs],
                   np.array([tuple(features) for _, features in pairs], dtype=np.float64).reshape(-1, OUT_COLUMNS))

    def __len__(self) -> int:
        return len(self.trades)

    def columns(self) -> tuple:
        """(trade ids, prices, qtys, trade times, buyer-maker flags) as arrays (trade_columns)."""
        if self._columns is None:
            self._columns = trade_arrays(self.trades)
        return self._columns

    def split(self, at: int) -> tuple["Chunk", "Chunk"]:
        """The first `at` trades and the rest."""
        columns = self._columns
        return (Chunk(self.symbol, self.trades[:at], self.features[:at],
                      None if columns is None else tuple(c[:at] for c in columns)),
                Chunk(self.symbol, self.trades[at:], self.features[at:],
                      None if columns is None else tuple(c[at:] for c in columns)))

    def keep(self, rows: np.ndarray) -> "Chunk":
        """The chunk of the rows where `rows` (a boolean mask) is true."""
        return Chunk(self.symbol, [t for t, kept in zip(self.trades, rows.tolist()) if kept], self.features[rows],
                     None if self._columns is None else tuple(c[rows] for c in self._columns))

    def trade(self, row: int) -> Trade:
        return Trade._make(self.trades[row])

    def trade_features(self, row: int) -> TradeFeatures:
        values = self.features[row].tolist()
        values[HISTORY] = int(values[HISTORY])
        return TradeFeatures._make(values)

    def trade_ids(self) -> list[int]:
        return [t[1] for t in self.trades]

    def __getstate__(self):
        return self.symbol, self.trades, self.features.tobytes()

    def __setstate__(self, state):
        self.symbol, self.trades, features = state
        self.features = np.frombuffer(features, dtype=np.float64).reshape(-1, OUT_COLUMNS)
        self._columns = None


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

    def column(self, index: int) -> np.ndarray:
        """One of Chunk.columns() over the whole batch: 0 trade ids, 1 prices, 2 qtys, 3 trade times,
        4 buyer-maker flags."""
        if len(self.chunks) == 1:
            return self.chunks[0].columns()[index]
        return np.concatenate([c.columns()[index] for c in self.chunks])

    def event_times(self) -> np.ndarray:
        return np.array([trade[5] for trade in self.trades()], dtype=np.int64)

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
