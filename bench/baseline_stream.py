"""The earlier single-process design as a stream, for the performance benchmark's headline ratio.

    python -m bench.baseline_stream --bootstrap-servers HOST:PORT --topic T --trades 20000 --db F

One Python process reads the topic with kafka-python and, per trade: parses the JSON, computes
the z-score of the price against the symbol's last 1,000 prices (numpy over the window, as the
earlier design did), scores [z, price change %, time gap] with scikit-learn's
IsolationForest.predict on that one row (the model refitted on the last 1,000 trades every
1,000 trades, none before the first 1,000), and inserts the trade, and any anomaly, into SQLite
row by row, committing each. The detection rules are bench/baseline.py's; only the execution
model differs, which is what this measures. Prints one JSON line with the counts and times.
"""
from __future__ import annotations

import argparse
import collections
import json
import sqlite3
import sys
import time

import numpy as np

from bench.baseline import MIN_HISTORY, RETRAIN_EVERY, THRESHOLD, WINDOW


class SymbolDetector:
    def __init__(self):
        self.prices: collections.deque = collections.deque(maxlen=WINDOW)
        self.features: collections.deque = collections.deque(maxlen=RETRAIN_EVERY)
        self.last_price = 0.0
        self.last_time_ms = 0
        self.seen = 0
        self.model = None

    def observe(self, price: float, time_ms: int) -> tuple[float, bool]:
        """(z-score, Isolation Forest says anomaly) for one trade, updating the window and model."""
        from sklearn.ensemble import IsolationForest

        z = 0.0
        if len(self.prices) >= MIN_HISTORY:
            window = np.array(self.prices)
            std = window.std()
            z = float((price - window.mean()) / std) if std > 0 else 0.0
        change = (price / self.last_price - 1) * 100 if self.last_price else 0.0
        gap = (time_ms - self.last_time_ms) / 1000 if self.last_time_ms else 0.0
        row = [z, change, gap]
        flagged = bool(self.model is not None and self.model.predict([row])[0] == -1)
        self.prices.append(price)
        self.features.append(row)
        self.last_price, self.last_time_ms = price, time_ms
        self.seen += 1
        if self.seen % RETRAIN_EVERY == 0:
            self.model = IsolationForest(n_estimators=100, contamination=0.01, random_state=42)
            self.model.fit(np.array(self.features))
        return z, flagged


def main(argv: list[str] | None = None) -> int:
    from kafka import KafkaConsumer

    parser = argparse.ArgumentParser(prog="python -m bench.baseline_stream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--trades", type=int, default=20_000, help="stop after this many trades")
    parser.add_argument("--db", required=True, help="SQLite file (recreated)")
    args = parser.parse_args(argv)

    db = sqlite3.connect(args.db)
    db.execute("DROP TABLE IF EXISTS trades")
    db.execute("DROP TABLE IF EXISTS anomalies")
    db.execute("CREATE TABLE trades (symbol TEXT, trade_id INTEGER, price REAL, qty REAL, time_ms INTEGER, z REAL)")
    db.execute("CREATE TABLE anomalies (symbol TEXT, trade_id INTEGER, method TEXT, z REAL)")
    consumer = KafkaConsumer(args.topic, bootstrap_servers=args.bootstrap_servers, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=10_000)
    detectors: dict[str, SymbolDetector] = collections.defaultdict(SymbolDetector)
    count = anomalies = 0
    started = time.monotonic()
    steady_from: tuple[int, float] | None = None  # (count, time) once every symbol seen has a model
    for message in consumer:
        payload = json.loads(message.value)
        for trade in payload if isinstance(payload, list) else (payload,):   # a batch message, or one trade
            symbol, price = trade["s"], float(trade["p"])
            detector = detectors[symbol]
            z, flagged = detector.observe(price, trade["T"])
            db.execute("INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?)", (symbol, trade["t"], price, float(trade["q"]),
                                                                        trade["T"], z))
            db.commit()
            z_fires = detector.seen > MIN_HISTORY and abs(z) >= THRESHOLD
            for method, fires in (("zscore", z_fires), ("iforest", flagged), ("combined", z_fires and flagged)):
                if fires:
                    db.execute("INSERT INTO anomalies VALUES (?, ?, ?, ?)", (symbol, trade["t"], method, z))
                    db.commit()
                    anomalies += 1
            count += 1
            if steady_from is None and all(d.model is not None for d in detectors.values()):
                steady_from = (count, time.monotonic())
            if count >= args.trades:
                break
        if count >= args.trades:
            break
    elapsed = time.monotonic() - started
    consumer.close()
    db.close()
    report = {"trades": count, "anomalies": anomalies, "seconds": round(elapsed, 3),
              "trades_per_s": round(count / elapsed, 1) if elapsed else 0.0}
    if steady_from and count > steady_from[0]:
        steady_seconds = time.monotonic() - steady_from[1] - (time.monotonic() - started - elapsed)
        report["steady_trades_per_s"] = round((count - steady_from[0]) / steady_seconds, 1)
    print(json.dumps(report))
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main())
