"""ScoreTrades' keyed state: one value per symbol holding its features, open bars and waiting trades.

One state rather than three, because PyFlink's cost per state is paid per symbol, not per byte:
every switch to another key touches each registered state of the operator, and the end of every
bundle writes back each state a key changed, one request each. With 2,000 sparse symbols nearly
every trade switches key, and a bundle touches most symbols (docs/performance.md).

Savepoints of earlier versions kept four states per symbol: the features alone in `symbol_state`,
`open_bars`, `unscored_batch` and, before issue 7, the list state `unscored`. The record is kept
under the name `symbol_state`, so a value read there that is a bare SymbolState tells an earlier
version's savepoint; only then are the other three registered (EarlierLayout), read once for the
symbol, cleared, and folded into its record. A job started from a savepoint of this version never
registers them, and so never pays for them (docs/reliability.md, "Upgrades").
"""
from __future__ import annotations

from flink_jobs.bars import OpenBars
from flink_jobs.features.symbol_state import SymbolState
from flink_jobs.state_pickling import StdlibPickled

STATE_NAME = "symbol_state"


class SymbolRecord(StdlibPickled):
    """features: the rolling features (None before the symbol's first trade); bars: the open bars
    (None until one opens); waiting: the symbol's trades held in the scoring micro-batch, as
    scoring_batch.Chunks (before the fifteenth round of issue 7, (trade, features) pairs, which
    ScoreTrades turns into a Chunk when it reads them); closed: the rows of the symbol's closed
    bars held in the same micro-batch (bars table rows; before the nineteenth round, closed bars
    left at once and records had no such field). Both are kept so that a checkpoint taken while
    they wait restores them."""

    __slots__ = ("features", "bars", "waiting", "closed")

    def __init__(self, features: SymbolState | None = None, bars: OpenBars | None = None,
                 waiting: list | None = None, closed: list | None = None):
        self.features = features
        self.bars = bars
        self.waiting = waiting if waiting is not None else []
        self.closed = closed if closed is not None else []

    def holds_batch(self) -> bool:
        """Whether part of the scoring micro-batch waits here: trades or closed bars' rows."""
        return bool(self.waiting or self.closed)

    def forget_batch(self) -> None:
        """The batch's part here has been written (or another symbol's flush wrote it)."""
        self.waiting, self.closed = [], []

    def __getstate__(self):
        return self.features, self.bars, self.waiting, self.closed

    def __setstate__(self, state):
        self.features, self.bars, self.waiting = state[:3]
        self.closed = state[3] if len(state) > 3 else []


class EarlierLayout:
    """The three keyed states earlier versions kept beside the features, registered on first need."""

    def __init__(self, runtime_context):
        from pyflink.common import Types
        from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

        pickled = Types.PICKLED_BYTE_ARRAY()
        self.bars = runtime_context.get_state(ValueStateDescriptor("open_bars", pickled))
        self.waiting = runtime_context.get_state(ValueStateDescriptor("unscored_batch", pickled))
        self.waiting_list = runtime_context.get_list_state(ListStateDescriptor("unscored", pickled))

    def take(self, features: SymbolState) -> SymbolRecord:
        """The current symbol's record from its earlier states, which are cleared; the trades
        waiting in the list state (before issue 7) come first, as they are the older ones."""
        record = SymbolRecord(features, self.bars.value(),
                              list(self.waiting_list.get() or ()) + list(self.waiting.value() or ()))
        for state in (self.bars, self.waiting, self.waiting_list):
            state.clear()
        return record
