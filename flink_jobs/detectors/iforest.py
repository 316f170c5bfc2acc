"""Isolation Forest scoring with onnxruntime, a whole batch per call.

A `run` has a fixed cost (9 µs with the compact graph of models/onnx_export.py, 0.87 ms with
skl2onnx's per-tree graph) besides 2 µs per row, so the job collects rows and scores them
together. Scores follow scikit-learn's decision_function: below 0
is an outlier (label -1), and the further below, the stronger.
"""
from __future__ import annotations

import numpy as np

from flink_jobs.detectors.zscore import SIGNALS


class IncompatibleModel(ValueError):
    pass


class OnnxIsolationForest:
    """`combined_threshold`: the score below which the forest *confirms* a z-score alert in the
    combined method (see models/train.py). `feature_ranges`: {feature: (min, max)} of the training
    rows, so the combined method can tell when a trade lies where the forest has never seen data
    (see `beyond_training`)."""

    def __init__(self, session, version: str, combined_threshold: float = 0.0,
                 feature_ranges: dict | None = None):
        self.session = session
        self.version = version
        self.combined_threshold = combined_threshold
        self.feature_ranges = dict(feature_ranges or {})
        self.input_name = session.get_inputs()[0].name
        outputs = [o.name for o in session.get_outputs()]
        self.label_output, self.score_output = outputs[0], outputs[1]

    @classmethod
    def from_bytes(cls, onnx_bytes: bytes, version: str, combined_threshold: float = 0.0,
                   feature_ranges: dict | None = None) -> "OnnxIsolationForest":
        return cls(_session(onnx_bytes), version, combined_threshold, feature_ranges)

    @classmethod
    def from_file(cls, path: str, version: str, combined_threshold: float = 0.0,
                  feature_ranges: dict | None = None) -> "OnnxIsolationForest":
        with open(path, "rb") as handle:
            return cls.from_bytes(handle.read(), version, combined_threshold, feature_ranges)

    @classmethod
    def from_registry(cls, model) -> "OnnxIsolationForest":
        """A models.registry.ModelVersion, with the thresholds recorded at training. A model
        trained on other features (an older feature set) is refused: it would score nonsense."""
        from flink_jobs.features.symbol_state import FEATURE_NAMES, FEATURE_SET_VERSION

        trained_on = model.metadata.get("feature_names")
        if trained_on is not None and list(trained_on) != list(FEATURE_NAMES):
            raise IncompatibleModel(f"model {model.version} was trained on features {trained_on}, "
                                    f"the job computes {list(FEATURE_NAMES)}: retrain it")
        feature_set = model.metadata.get("feature_set_version", 1)  # models from before versions: 1
        if feature_set != FEATURE_SET_VERSION:
            raise IncompatibleModel(f"model {model.version} was trained on feature set {feature_set}, "
                                    f"the job computes feature set {FEATURE_SET_VERSION}: retrain it")
        threshold = model.metadata.get("thresholds", {}).get("combined", 0.0)
        return cls.from_file(model.onnx_path, model.version, threshold, model.metadata.get("feature_ranges"))

    def beyond_training(self, features) -> str | None:
        return beyond_training(self.feature_ranges, features)

    def score(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, labels) for a (n, features) float32 matrix."""
        labels, scores = self.session.run([self.label_output, self.score_output],
                                          {self.input_name: np.ascontiguousarray(rows, dtype=np.float32)})
        return np.asarray(scores, dtype=np.float64).reshape(-1), np.asarray(labels).reshape(-1)


def beyond_training(feature_ranges: dict, features) -> str | None:
    """Which z-score signal of this trade lies beyond every value in the training data, in words;
    None if none does (or the model recorded no ranges).

    An Isolation Forest cannot split beyond the range of its training data: a trade 100x the
    median size lands in the same leaf as the largest training trade and scores as ordinary
    as it. The forest has no evidence against such a trade, so the combined method does not
    let it veto: the novelty itself confirms (see detectors/methods.py)."""
    for name, words, two_sided in SIGNALS:
        if name not in feature_ranges:
            continue
        low, high = feature_ranges[name]
        value = getattr(features, name)
        if value > high:
            return f"{words} {value:+.1f} beyond the {high:+.1f} the forest was trained on"
        if two_sided and value < low:
            return f"{words} {value:+.1f} beyond the {low:+.1f} the forest was trained on"
    return None


def _session(onnx_bytes: bytes):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # One thread: Flink already runs one worker per slot; more threads would fight over the cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
