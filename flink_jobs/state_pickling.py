"""Cheaper pickling of the job's keyed state values.

PyFlink writes a Types.PICKLED_BYTE_ARRAY() state value back with cloudpickle at the end of every
bundle, for every key the bundle changed: with 2,000 sparse symbols, about once per trade.
cloudpickle runs Python code for each object inside the value (its reducer_override), which made
one symbol's features state (a few thousand floats in a dozen small objects) cost 51 µs per
write; the standard library's C pickler takes 23 µs for the same. The classes below hand
cloudpickle one bytes object made by the standard pickler instead (docs/performance.md).

Values saved before these classes existed (a plain list, an object pickled attribute by
attribute) still load: their classes keep __setstate__.
"""
from __future__ import annotations

import pickle


def _restore(cls, blob: bytes):
    value = cls.__new__(cls)
    value.__setstate__(pickle.loads(blob))
    return value


def _restore_list(cls, blob: bytes):
    return cls(pickle.loads(blob))


class StdlibPickled:
    """Mixin for a class with __getstate__/__setstate__: pickled by the standard library even
    inside cloudpickle."""

    __slots__ = ()

    def __reduce__(self):
        return _restore, (type(self), pickle.dumps(self.__getstate__(), protocol=pickle.HIGHEST_PROTOCOL))


class StdlibPickledList(list):
    """A list pickled by the standard library even inside cloudpickle."""

    def __reduce__(self):
        return _restore_list, (type(self), pickle.dumps(list(self), protocol=pickle.HIGHEST_PROTOCOL))
