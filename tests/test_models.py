"""Training, ONNX parity with scikit-learn, the registry and the hot-swapping model watcher."""
import json
import os

import numpy as np
import pytest

from flink_jobs.detectors.iforest import OnnxIsolationForest
from flink_jobs.features.symbol_state import FEATURE_NAMES, FEATURE_SET_VERSION
from models import registry
from models.dataset import feature_matrix, trades_from_files
from models.train import PARITY_TOLERANCE, ParityError, check_parity, fit, to_onnx_bytes, train

from tests.conftest import sample_path

SAMPLES = [sample_path("ETHUSDT-trades-2023-02-02.csv"), sample_path("XRPETH-trades-2019-10-11.csv")]
COMPATIBLE = {"feature_names": list(FEATURE_NAMES), "feature_set_version": FEATURE_SET_VERSION}


@pytest.fixture(scope="module")
def matrix():
    X, _, _ = feature_matrix(trades_from_files(SAMPLES), window_size=1000, min_history=50)
    return X


@pytest.fixture(scope="module")
def fitted(matrix):
    model = fit(matrix[:4000], contamination=0.01, n_estimators=100, seed=42)
    return model, to_onnx_bytes(model, matrix.shape[1])


def test_feature_matrix_has_one_column_per_feature_and_skips_short_history(matrix):
    assert matrix.shape == (6000 - 2 * 50, len(FEATURE_NAMES))
    assert matrix.dtype == np.float32 and np.isfinite(matrix).all()


def test_onnx_gives_scikit_learns_labels_and_scores_on_held_out_real_rows(matrix, fitted):
    model, onnx_bytes = fitted
    held_out = matrix[4000:]
    scores, labels = OnnxIsolationForest.from_bytes(onnx_bytes, "t").score(held_out)
    np.testing.assert_array_equal(labels, model.predict(held_out))
    assert np.max(np.abs(scores - model.decision_function(held_out))) <= PARITY_TOLERANCE
    assert check_parity(model, onnx_bytes, held_out)["label_mismatches"] == 0


def test_parity_check_rejects_a_model_that_differs(matrix, fitted):
    model, _ = fitted
    other = to_onnx_bytes(fit(matrix[:4000], contamination=0.2, n_estimators=10, seed=1), matrix.shape[1])
    with pytest.raises(ParityError):
        check_parity(model, other, matrix[4000:])


def test_scores_do_not_depend_on_the_batch_they_are_scored_in(matrix, fitted):
    # Float32 sums may round differently by batch (seen: 3e-8); labels must not change.
    scorer = OnnxIsolationForest.from_bytes(fitted[1], "t")
    whole, whole_labels = scorer.score(matrix[:600])
    parts = [scorer.score(matrix[i:min(i + 7, 600)]) for i in range(0, 600, 7)]
    np.testing.assert_allclose(whole, np.concatenate([p[0] for p in parts]), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(whole_labels, np.concatenate([p[1] for p in parts]))


def test_training_registers_a_versioned_model_with_its_metadata(tmp_path):
    published = train(SAMPLES, str(tmp_path), None, 0.01, 50, 42, 0.2, 1000, 50)
    assert registry.latest_version(str(tmp_path)) == published.version
    with open(os.path.join(tmp_path, published.version, "metadata.json")) as handle:
        meta = json.load(handle)
    assert meta["feature_names"] == list(FEATURE_NAMES) and meta["feature_set_version"] == FEATURE_SET_VERSION
    assert meta["symbols"] == ["ETHUSDT", "XRPETH"]
    assert meta["params"]["contamination"] == 0.01 and meta["params"]["random_state"] == 42
    assert meta["metrics"]["parity"]["rows"] > 1000 and len(meta["sha256"]) == 64
    assert meta["training_window"]["rows"] == int(0.8 * 5900)


def test_registry_refuses_a_model_file_that_does_not_match_its_checksum(tmp_path, fitted):
    published = registry.publish(str(tmp_path), fitted[1], COMPATIBLE)
    with open(published.onnx_path, "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(registry.RegistryError, match="sha256"):
        registry.load(str(tmp_path))
    with pytest.raises(registry.RegistryError, match="no model"):
        registry.load(str(tmp_path / "empty"))


def test_watcher_swaps_to_a_newly_published_latest_model_after_its_poll_interval(tmp_path, fitted, matrix):
    clock = {"now": 0.0}
    first = registry.publish(str(tmp_path), fitted[1], COMPATIBLE, version="20260101T000000Z")
    watcher = registry.ModelWatcher(str(tmp_path), "latest", poll_seconds=10, clock=lambda: clock["now"])
    assert watcher.current().version == first.version
    other = to_onnx_bytes(fit(matrix[:2000], 0.05, 20, 7), matrix.shape[1])
    second = registry.publish(str(tmp_path), other, COMPATIBLE, version="20260102T000000Z")
    clock["now"] = 5.0
    assert watcher.current().version == first.version      # not polled yet
    clock["now"] = 10.0
    assert watcher.current().version == second.version
    # A broken newer version is refused and the current model stays.
    os.makedirs(tmp_path / "20260103T000000Z")
    (tmp_path / "LATEST").write_text("20260103T000000Z\n")
    clock["now"] = 20.0
    assert watcher.current().version == second.version and watcher.swaps == 1


def test_a_pinned_version_is_never_swapped(tmp_path, fitted):
    first = registry.publish(str(tmp_path), fitted[1], COMPATIBLE, version="20260101T000000Z")
    watcher = registry.ModelWatcher(str(tmp_path), first.version, poll_seconds=0.5, clock=lambda: 100.0)
    registry.publish(str(tmp_path), fitted[1], COMPATIBLE, version="20260105T000000Z")
    assert watcher.current().version == first.version


def test_a_model_trained_on_other_features_is_refused_and_the_watcher_keeps_the_current_one(tmp_path, fitted):
    from flink_jobs.detectors.iforest import IncompatibleModel
    good = registry.publish(str(tmp_path), fitted[1], COMPATIBLE, version="20260101T000000Z")
    old = registry.publish(str(tmp_path), fitted[1], {"feature_names": ["z_score", "price_change_pct"]},
                           version="20260102T000000Z")
    with pytest.raises(IncompatibleModel, match="retrain"):
        OnnxIsolationForest.from_registry(old)
    (tmp_path / "LATEST").write_text(good.version + "\n")
    clock = {"now": 0.0}
    watcher = registry.ModelWatcher(str(tmp_path), "latest", poll_seconds=1, clock=lambda: clock["now"])
    (tmp_path / "LATEST").write_text(old.version + "\n")
    clock["now"] = 2.0
    assert watcher.current().version == good.version and watcher.swaps == 0


def test_a_model_of_an_older_feature_set_with_the_same_names_is_refused(tmp_path, fitted):
    # Same column names, other definitions (e.g. before the time-weighted rate baseline).
    from flink_jobs.detectors.iforest import IncompatibleModel
    older = registry.publish(str(tmp_path), fitted[1], {"feature_names": list(FEATURE_NAMES)})
    with pytest.raises(IncompatibleModel, match="feature set 1"):
        OnnxIsolationForest.from_registry(older)


def test_training_records_where_the_forest_has_seen_data(tmp_path, matrix):
    published = train(SAMPLES, str(tmp_path), None, 0.01, 50, 42, 0.2, 1000, 50)
    ranges = published.metadata["feature_ranges"]
    assert set(ranges) == set(FEATURE_NAMES)
    for i, name in enumerate(FEATURE_NAMES):  # the training rows are a subset of all rows
        low, high = ranges[name]
        assert matrix[:, i].min() <= low <= high <= matrix[:, i].max()
    scorer = OnnxIsolationForest.from_registry(published)
    assert scorer.feature_ranges == ranges


def test_if_missing_trains_into_an_empty_registry_keeps_a_usable_model_and_replaces_an_unusable_one(tmp_path):
    from models.train import main

    args = [*SAMPLES, "--registry", str(tmp_path), "--n-estimators", "10", "--if-missing"]
    assert main(args) == 0
    first = registry.latest_version(str(tmp_path))
    assert first is not None
    assert main(args) == 0                                   # a usable model: nothing trained
    assert registry.latest_version(str(tmp_path)) == first
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [first, "LATEST"]
    # An upgrade changed the features: the latest model is one the job refuses, so a new one is trained.
    with open(registry.load(str(tmp_path)).onnx_path, "rb") as handle:
        stale = registry.publish(str(tmp_path), handle.read(), {"feature_names": list(FEATURE_NAMES)},
                                 version="29990101T000000Z")
    assert main(args) == 0
    retrained = registry.latest_version(str(tmp_path))
    assert retrained not in (first, stale.version)
    assert registry.load_usable(str(tmp_path)).version == retrained


def test_the_job_refuses_to_start_with_a_model_it_cannot_use_and_names_the_registry(tmp_path, fitted):
    import config
    from flink_jobs.anomaly_job import check_model

    cfg = config.load({"MODEL_REGISTRY": str(tmp_path)})
    with pytest.raises(config.ConfigError, match=f"MODEL_REGISTRY={tmp_path}: no model"):
        check_model(cfg)
    registry.publish(str(tmp_path), fitted[1], {"feature_names": list(FEATURE_NAMES)})  # feature set 1
    with pytest.raises(config.ConfigError, match="feature set 1"):
        check_model(cfg)
    registry.publish(str(tmp_path), fitted[1], COMPATIBLE)
    check_model(cfg)
    check_model(config.load({"MODEL_REGISTRY": str(tmp_path / "none"), "DETECTION_METHODS": "zscore"}))
