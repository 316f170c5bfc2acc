"""Train an Isolation Forest on historical trades, export it to ONNX, check it, register it.

    python -m models.train FILE... [--symbol S] [--registry DIR] [--contamination 0.01]
                           [--n-estimators 100] [--seed 42] [--holdout 0.2] [--if-missing]

The feature matrix comes from the streaming job's own feature code (models/dataset.py). The last
`--holdout` share of rows (in time) is held out: the ONNX model must give the same labels as
scikit-learn there, and scores within PARITY_TOLERANCE, or nothing is registered.

With --if-missing it trains only when the registry's latest model is one the job cannot use (none,
incomplete, or of another feature set after an upgrade): the check the job makes at start. The demo
and the deployments' train step run it that way, so running them again keeps the model they have.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import config as app_config  # noqa: E402
from flink_jobs.detectors.iforest import IncompatibleModel, OnnxIsolationForest  # noqa: E402
from flink_jobs.features.symbol_state import FEATURE_NAMES, FEATURE_SET_VERSION  # noqa: E402
from models import registry  # noqa: E402
from models.dataset import feature_matrix, trades_from_files  # noqa: E402

log = logging.getLogger("models.train")
PARITY_TOLERANCE = 1e-4  # |onnx score - sklearn decision_function|; float32 inference vs float64
# The combined method needs the forest to *confirm* a z-score alert: a trade among the most unusual
# 1% of the training data confirms. (Measured with bench/detection_benchmark.py: 5% confirmed
# nearly every z-score alert, 5.6 false alerts per symbol-hour on clean data; 1% gives 1.3 and
# raises combined F1 on spikes, crashes and pumps from 0.77-0.84 to 0.93-0.97.) Alone (method
# iforest) the forest cuts at its contamination (score 0).
COMBINED_QUANTILE = 0.01


def feature_ranges(rows: np.ndarray) -> dict:
    """{feature: [min, max]} over the training rows: where the forest has seen data."""
    return {name: [float(rows[:, i].min()), float(rows[:, i].max())] for i, name in enumerate(FEATURE_NAMES)}


def thresholds(model, rows: np.ndarray, combined_quantile: float = COMBINED_QUANTILE) -> dict:
    return {"iforest": 0.0, "combined": float(np.quantile(model.decision_function(rows), combined_quantile))}


class ParityError(RuntimeError):
    pass


def fit(matrix: np.ndarray, contamination: float, n_estimators: int, seed: int):
    from sklearn.ensemble import IsolationForest

    model = IsolationForest(n_estimators=n_estimators, contamination=contamination, random_state=seed)
    return model.fit(matrix)


def to_onnx_bytes(model, n_features: int) -> bytes:
    from skl2onnx import to_onnx

    from models.onnx_export import register

    register()  # the compact IsolationForest graph (models/onnx_export.py)
    sample = np.zeros((1, n_features), dtype=np.float32)
    onnx_model = to_onnx(model, sample, target_opset={"": 17, "ai.onnx.ml": 3})
    return onnx_model.SerializeToString()


def check_parity(model, onnx_bytes: bytes, rows: np.ndarray) -> dict:
    """Same labels and scores within PARITY_TOLERANCE on `rows`, or ParityError."""
    scorer = OnnxIsolationForest.from_bytes(onnx_bytes, "candidate")
    onnx_scores, onnx_labels = scorer.score(rows)
    sk_scores = model.decision_function(rows)
    sk_labels = model.predict(rows)
    max_diff = float(np.max(np.abs(onnx_scores - sk_scores))) if len(rows) else 0.0
    label_mismatches = int(np.sum(onnx_labels != sk_labels))
    # A row whose score is within the tolerance of the 0 threshold may flip; anything else may not.
    near_threshold = np.abs(sk_scores) <= PARITY_TOLERANCE
    hard_mismatches = int(np.sum((onnx_labels != sk_labels) & ~near_threshold))
    if max_diff > PARITY_TOLERANCE or hard_mismatches:
        raise ParityError(f"ONNX differs from scikit-learn on {len(rows)} held-out rows: max score "
                          f"difference {max_diff:.2e} (tolerance {PARITY_TOLERANCE}), {hard_mismatches} labels")
    return {"rows": len(rows), "max_score_difference": max_diff, "label_mismatches": label_mismatches}


def train(paths: list[str], registry_dir: str, symbol: str | None, contamination: float,
          n_estimators: int, seed: int, holdout: float, window_size: int, min_history: int):
    started = time.monotonic()
    matrix, symbols, times = feature_matrix(trades_from_files(paths, symbol), window_size, min_history)
    if len(matrix) < 100:
        raise ValueError(f"only {len(matrix)} usable trades in {paths}: need at least 100 to train")
    split = int(len(matrix) * (1 - holdout))
    order = np.argsort(np.asarray(times), kind="stable")
    train_rows, held_out = matrix[order[:split]], matrix[order[split:]]
    log.info("feature matrix: %d rows x %d features from %d symbols (%.1f s); training on %d, holding out %d",
             len(matrix), matrix.shape[1], len(set(symbols)), time.monotonic() - started, len(train_rows),
             len(held_out))
    model = fit(train_rows, contamination, n_estimators, seed)
    onnx_bytes = to_onnx_bytes(model, matrix.shape[1])
    parity = check_parity(model, onnx_bytes, held_out)
    metadata = {
        "feature_names": list(FEATURE_NAMES),
        "feature_set_version": FEATURE_SET_VERSION,
        "feature_ranges": feature_ranges(train_rows),
        "symbols": sorted(set(symbols)),
        "training_window": {"first_trade_ms": int(min(times)), "last_trade_ms": int(max(times)),
                            "rows": int(len(train_rows)), "sources": [os.path.basename(p) for p in paths]},
        "params": {"contamination": contamination, "n_estimators": n_estimators, "random_state": seed,
                   "rolling_window": window_size, "min_history": min_history},
        "thresholds": thresholds(model, train_rows),
        "metrics": {"parity": parity,
                    "held_out_anomaly_rate": float(np.mean(model.predict(held_out) == -1)) if len(held_out) else 0.0,
                    "threshold_offset": float(model.offset_)},
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    published = registry.publish(registry_dir, onnx_bytes, metadata)
    log.info("registered model %s in %s (parity: max score difference %.1e on %d held-out rows; %.1f s)",
             published.version, registry_dir, parity["max_score_difference"], parity["rows"],
             time.monotonic() - started)
    return published


def usable_model(registry_dir: str) -> registry.ModelVersion | None:
    """The registry's latest model if the job can score with it; None (and why, in the log) if not."""
    try:
        return registry.load_usable(registry_dir)
    except (registry.RegistryError, IncompatibleModel) as why:
        log.info("training: no usable model yet (%s)", why)
        return None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = app_config.load()
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="Binance trade files (CSV/.gz/.zip) or JSON lines")
    parser.add_argument("--symbol", help="symbol of CSV files whose name does not say it")
    parser.add_argument("--registry", default=cfg.detection.model_registry, help="[MODEL_REGISTRY]")
    parser.add_argument("--contamination", type=float, default=0.01)
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--holdout", type=float, default=0.2, help="share of rows (latest in time) held out")
    parser.add_argument("--if-missing", action="store_true",
                        help="train only if the registry has no model the job can use (none, incomplete, "
                             "or of another feature set)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not 0 < args.contamination <= 0.5:
        parser.error("--contamination must be in (0, 0.5]")
    if args.if_missing and (model := usable_model(args.registry)) is not None:
        log.info("model %s in %s is usable by the job: not training (--if-missing)", model.version, args.registry)
        return 0
    try:
        train(args.files, args.registry, args.symbol, args.contamination, args.n_estimators, args.seed,
              args.holdout, cfg.detection.window_size, cfg.detection.min_history)
    except (ValueError, ParityError, OSError) as error:
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
