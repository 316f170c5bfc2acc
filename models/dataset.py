"""The feature matrix of historical trades, built with the streaming job's own feature code."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from flink_jobs.features.symbol_state import FEATURE_NAMES, Repeated, SymbolState, observe_in_order
from flink_jobs.trades import InvalidTrade, Trade, parse_trade
from producer.replay import merged_records


def trades_from_files(paths: list[str], symbol: str | None = None) -> Iterable[Trade]:
    """Valid trades of Binance trade files / JSON lines, in time order; invalid lines are skipped."""
    for record in merged_records(paths, symbol):
        try:
            yield parse_trade(record.message, lambda s: True)
        except InvalidTrade:
            continue


def feature_rows(trades: Iterable[Trade], window_size: int, min_history: int):
    """(trade, features) for each trade once its symbol has min_history trades, repeats dropped."""
    states: dict[str, SymbolState] = {}
    for trade, features in observe_in_order(states, trades, window_size):
        if type(features) is not Repeated and features.history >= min_history:
            yield trade, features


def feature_matrix(trades: Iterable[Trade], window_size: int, min_history: int):
    """X (float32, one column per FEATURE_NAMES entry), the symbols and the times of its rows."""
    rows, symbols, times = [], [], []
    for trade, features in feature_rows(trades, window_size, min_history):
        rows.append(features.vector())
        symbols.append(trade.symbol)
        times.append(trade.trade_time_ms)
    matrix = np.asarray(rows, dtype=np.float32).reshape(-1, len(FEATURE_NAMES))
    return matrix, symbols, times
