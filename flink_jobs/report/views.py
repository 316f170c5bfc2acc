"""The report's views, read from the store with the named queries of sql/queries/.

The same views as the Grafana dashboards: price per symbol with its anomalies, the most severe
anomalies, anomalies per method and kind, dead letters. Prices come from the bars when the store
has them for a symbol, else straight from the trades.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

# A chart has at most about this many points: the bucket grows with the symbol's time span.
MAX_POINTS = 1500
BUCKETS_S = (1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400)
KINDS = ("return", "volume", "rate")


class ReportError(RuntimeError):
    """Nothing to report, or the store cannot be read; the message says what to do."""


def signal_kind(z_return: float, volume_z: float, rate_z: float) -> str:
    """Which z-score signal stood out most, chosen as ZScoreDetector.score chooses it: the return
    either way, sizes and rates only upwards, the return first on a tie. The SQL of
    anomaly_counts_by_kind.sql and of the anomaly feed dashboard is this rule; a test holds them equal."""
    signals = (abs(z_return), max(volume_z, 0.0), max(rate_z, 0.0))
    return KINDS[signals.index(max(signals))]


@dataclass
class PriceSeries:
    symbol: str
    source: str                      # "1 min bars", "1 s bars" or "trades"
    bucket_s: int
    times: list = field(default_factory=list)
    closes: list = field(default_factory=list)
    markers: list = field(default_factory=list)   # (time, price, method)


@dataclass
class Views:
    trades: list            # trades_per_symbol rows
    prices: list            # PriceSeries per symbol
    top_anomalies: list     # top_anomalies rows
    counts: list            # anomaly_counts_by_kind rows
    dead_letters: list      # dead_letters_by_reason rows
    anomalies_total: int

    @property
    def dead_letters_total(self) -> int:
        return sum(row["messages"] for row in self.dead_letters)


def bucket_for(first: dt.datetime, last: dt.datetime) -> int:
    span_s = max((last - first).total_seconds(), 1)
    return next((b for b in BUCKETS_S if span_s / b <= MAX_POINTS), BUCKETS_S[-1])


def _has_table(store, name: str) -> bool:
    return bool(store.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = {n:String}",
                             {"n": name}))


def price_series(store, symbol: str, first, last, bar_intervals: dict) -> PriceSeries:
    bucket = bucket_for(first, last)
    intervals = bar_intervals.get(symbol, [])
    if intervals:
        # the coarsest bars that still fit the bucket, else the finest there are
        fitting = [i for i in intervals if i <= bucket]
        interval = max(fitting) if fitting else min(intervals)
        rows = store.run_named("report_price_from_bars", {"symbol": symbol, "interval_s": interval, "bucket_s": bucket})
        source = "1 min bars" if interval == 60 else f"{interval} s bars"
    else:
        rows = store.run_named("report_price_from_trades", {"symbol": symbol, "bucket_s": bucket})
        source = "trades"
    series = PriceSeries(symbol, source, bucket, [dt.datetime.fromtimestamp(r["t"], dt.timezone.utc) for r in rows],
                         [r["close"] for r in rows])
    series.markers = [(r["trade_time"], r["price"], r["method"])
                      for r in store.run_named("report_anomaly_markers", {"symbol": symbol})]
    return series


def collect(store, top: int) -> Views:
    if not _has_table(store, "trades") or not store.scalar("SELECT count() FROM trades"):
        raise ReportError("the store has no trades: run the job first (make demo), or point CHDB_PATH / "
                          "CLICKHOUSE_URL at a store it wrote")
    trades = store.run_named("trades_per_symbol")
    bar_intervals = ({r["symbol"]: sorted(r["intervals"]) for r in store.run_named("report_bar_intervals")}
                     if _has_table(store, "bars") else {})
    prices = [price_series(store, r["symbol"], r["first_trade"], r["last_trade"], bar_intervals) for r in trades]
    counts = store.run_named("anomaly_counts_by_kind")
    return Views(trades=trades, prices=prices, top_anomalies=store.run_named("top_anomalies", {"limit": top}),
                 counts=counts, dead_letters=store.run_named("dead_letters_by_reason"),
                 anomalies_total=sum(r["anomalies"] for r in counts))
