"""Labelled detection benchmark: known events planted into clean trades, ours against the
earlier design, per method and per kind; plus false alerts per symbol-hour on clean data.

    python -m bench.detection_benchmark [--small] [--out docs/detection-benchmark.md]

Clean data: trades DERIVED from real Binance.US 1-minute candles (producer/derive.py) for the
five default symbols, and the REAL XRPETH aggregate trades bundled in producer/samples. The
model trains on a different window (and the first half of XRPETH) than it is evaluated on.
Ours is flink_jobs/detectors/offline.py: the job's own detection code, which the end-to-end
tests prove gives exactly what the Flink job gives.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import baseline  # noqa: E402
from bench.inject import KINDS, plant_events  # noqa: E402
from config import load  # noqa: E402
from flink_jobs.detectors.iforest import OnnxIsolationForest  # noqa: E402
from flink_jobs.detectors.offline import detect  # noqa: E402
from flink_jobs.trades import Trade  # noqa: E402
from models.dataset import feature_matrix, trades_from_files  # noqa: E402
from models.train import COMBINED_QUANTILE, feature_ranges, fit, thresholds, to_onnx_bytes  # noqa: E402
from producer.derive import derive_trades, epoch_ms, read_candles  # noqa: E402

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "producer", "samples")
# symbol, candle series, price scale (as in the demo)
SYMBOLS = [("BTCUSDT", "BTCUSDT", 1.0), ("ETHUSDT", "BTCUSD", 0.0716), ("BNBUSDT", "BTCUSDC", 0.0143),
           ("SOLUSDT", "BTCUSDT", 0.00088), ("XRPUSDT", "BTCUSD", 0.0000183)]
TRAIN_DAY, EVAL_DAY = "2023-03-13", "2023-03-14"
TRADES_PER_HOUR = 5400  # 1.5 trades/s on average; candles with more volume get more
GRACE_MS = 5000         # an alert up to 5 s after an event's last trade still belongs to it
METHODS = ("zscore", "iforest", "combined")


def derived(symbol, series, scale, day, hours, seed, first_id):
    candles = read_candles(os.path.join(SAMPLES, f"{series}_1m_20230301_20230321.csv.gz"),
                           epoch_ms(f"{day}T00:00"), epoch_ms(f"{day}T00:00") + hours * 3_600_000)
    rows = derive_trades(candles, TRADES_PER_HOUR * hours, seed, first_id, scale)
    return [Trade(symbol, r[0], r[1], r[2], r[4], r[4], r[5]) for r in rows]


def real_xrpeth():
    trades = list(trades_from_files([os.path.join(SAMPLES, "XRPETH-trades-2019-10-11.csv")]))
    half = len(trades) // 2
    return trades[:half], trades[half:]


def by_time(*streams):
    return sorted((t for s in streams for t in s), key=lambda t: t.trade_time_ms)


def hours_of(trades_by_symbol):
    return sum((s[-1].trade_time_ms - s[0].trade_time_ms) / 3_600_000 for s in trades_by_symbol.values())


def ours(trades, cfg, model):
    _, anomalies = detect(trades, cfg, model)
    return [(a.trade.symbol, a.trade.trade_time_ms, a.method) for a in anomalies]


def theirs(trades):
    return [(t.symbol, t.trade_time_ms, method) for t, method in baseline.detect(trades)]


def evaluate(alerts, events, method):
    """Event recall, alert precision, F1 and median delay (s) of one method's alerts."""
    mine = [a for a in alerts if a[2] == method]
    by_symbol = {}
    for e in events:
        by_symbol.setdefault(e.symbol, []).append(e)
    first_hit, true_alerts = {}, 0
    for symbol, t, _ in mine:
        hit = next((e for e in by_symbol.get(symbol, ()) if e.start_ms <= t <= e.end_ms + GRACE_MS), None)
        if hit:
            true_alerts += 1
            first_hit[hit] = min(first_hit.get(hit, t), t)
    recall = len(first_hit) / len(events) if events else 0.0
    precision = true_alerts / len(mine) if mine else 0.0
    f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    delays = [(t - e.start_ms) / 1000 for e, t in first_hit.items()]
    return {"recall": recall, "precision": precision, "f1": f1,
            "delay": statistics.median(delays) if delays else float("nan"), "alerts": len(mine)}


def run(small: bool, combined_quantile: float = COMBINED_QUANTILE) -> tuple[str, dict]:
    """The report as markdown, and the numbers: results[(data, method)] = false alerts per
    symbol-hour; results[(kind, method)] = {"ours": metrics, "baseline": metrics}."""
    started = time.monotonic()
    results: dict = {}
    hours = 1 if small else 6
    symbols = SYMBOLS[:2] if small else SYMBOLS
    train = {s: derived(s, series, scale, TRAIN_DAY, hours, 100 + i, 1) for i, (s, series, scale) in enumerate(symbols)}
    clean = {s: derived(s, series, scale, EVAL_DAY, hours, 200 + i, 1) for i, (s, series, scale) in enumerate(symbols)}
    xrp_train, xrp_eval = real_xrpeth()

    cfg = load({"SYMBOLS": "*"}).detection
    X, _, _ = feature_matrix(by_time(*train.values(), xrp_train), cfg.window_size, cfg.min_history)
    sk_model = fit(X, contamination=0.01, n_estimators=100, seed=42)
    model = OnnxIsolationForest.from_bytes(to_onnx_bytes(sk_model, X.shape[1]), "benchmark",
                                           thresholds(sk_model, X, combined_quantile)["combined"],
                                           feature_ranges(X))

    lines = [f"Clean data: {len(symbols)} derived symbols x {hours} h of {EVAL_DAY} "
             f"({sum(len(v) for v in clean.values()):,} trades) and {len(xrp_eval):,} real XRPETH trades "
             f"({hours_of({'x': xrp_eval}):.1f} h). Model trained on {TRAIN_DAY} and the first XRPETH half "
             f"({len(X):,} rows); the forest confirms below its {combined_quantile:.1%} training quantile.", ""]

    lines += ["### False alerts per symbol-hour on clean data", "",
              "| data | method | ours | baseline |", "| --- | --- | --- | --- |"]
    for name, streams in (("derived", clean), ("real XRPETH", {"XRPETH": xrp_eval})):
        merged = by_time(*streams.values())
        mine, base = ours(merged, cfg, model), theirs(merged)
        symbol_hours = hours_of(streams)
        for method in METHODS:
            rate = sum(a[2] == method for a in mine) / symbol_hours
            results[(name, method)] = rate
            lines.append(f"| {name} | {method} | {rate:.2f} | {sum(a[2] == method for a in base) / symbol_hours:.2f} |")

    lines += ["", "### Planted events: recall, precision, F1, median delay", "",
              "| kind | events | method | ours R / P / F1 | ours delay s | baseline R / P / F1 | baseline delay s |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    pooled = {m: {"ours": [], "base": [], "events": []} for m in METHODS}
    for k, kind in enumerate(KINDS):
        planted, events = {}, []
        for i, (symbol, trades) in enumerate(clean.items()):
            planted[symbol], symbol_events = plant_events(trades, kind, every_s=600, seed=1000 * k + i)
            events += symbol_events
        merged = by_time(*planted.values())
        mine, base = ours(merged, cfg, model), theirs(merged)
        for method in METHODS:
            a, b = evaluate(mine, events, method), evaluate(base, events, method)
            lines.append(f"| {kind} | {len(events)} | {method} | {a['recall']:.2f} / {a['precision']:.2f} / "
                         f"**{a['f1']:.2f}** | {a['delay']:.2f} | {b['recall']:.2f} / {b['precision']:.2f} / "
                         f"{b['f1']:.2f} | {b['delay']:.2f} |")
            pooled[method]["ours"].append(a)
            pooled[method]["base"].append(b)
            results[(kind, method)] = {"ours": a, "baseline": b}
    lines += ["", "### All kinds (mean over kinds)", "",
              "| method | ours F1 | ours median delay s | baseline F1 | baseline median delay s |",
              "| --- | --- | --- | --- | --- |"]
    for method in METHODS:
        o, b = pooled[method]["ours"], pooled[method]["base"]
        lines.append(f"| {method} | **{statistics.mean(x['f1'] for x in o):.2f}** | "
                     f"{statistics.median(x['delay'] for x in o):.2f} | {statistics.mean(x['f1'] for x in b):.2f} | "
                     f"{statistics.median(x['delay'] for x in b):.2f} |")
    lines += ["", f"({time.monotonic() - started:.0f} s)"]
    return "\n".join(lines), results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detection_benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="2 symbols x 1 h (the CI run)")
    parser.add_argument("--out", help="also write the tables to this markdown file")
    parser.add_argument("--combined-quantile", type=float, default=COMBINED_QUANTILE,
                        help="training-score quantile below which the forest confirms (default %(default)s)")
    args = parser.parse_args(argv)
    report, _ = run(args.small, args.combined_quantile)
    print(report)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
