"""The compact IsolationForest graph (models/onnx_export.py) against scikit-learn itself."""
import numpy as np
import onnx
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

from flink_jobs.detectors.iforest import OnnxIsolationForest
from models.onnx_export import _float32_at_or_below, average_path_length
from models.train import to_onnx_bytes


def scored(model, rows):
    return OnnxIsolationForest.from_bytes(to_onnx_bytes(model, rows.shape[1]), "test").score(rows)


def test_average_path_length_is_scikit_learns():
    n = np.array([0, 1, 2, 3, 7, 256, 100_000])
    assert np.allclose(average_path_length(n), _average_path_length(n), rtol=1e-12, atol=0)


def test_thresholds_keep_exactly_the_float32_inputs_on_their_side():
    rng = np.random.default_rng(5)
    for threshold in rng.normal(size=2_000) * 10.0 ** rng.integers(-6, 6, size=2_000):
        t = _float32_at_or_below(float(threshold))
        below, above = np.float32(t), np.nextafter(np.float32(t), np.float32(np.inf))
        assert float(below) <= threshold < float(above)


@pytest.mark.parametrize("max_features", [1.0, 0.5])
def test_scores_and_labels_equal_scikit_learns_with_all_features_and_with_feature_subsets(max_features):
    rng = np.random.default_rng(11)
    train = rng.standard_t(3, size=(6_000, 12)).astype(np.float32)
    # Ties and rounded values put thresholds halfway between neighbouring float32 values.
    train[:, 3] = np.round(train[:, 3], 1)
    model = IsolationForest(n_estimators=60, contamination=0.02, max_features=max_features,
                            random_state=3).fit(train)
    rows = np.vstack([train[:3_000], rng.standard_t(3, size=(3_000, 12)).astype(np.float32) * 3])
    scores, labels = scored(model, rows)
    assert np.max(np.abs(scores - model.decision_function(rows))) < 1e-5
    assert np.array_equal(labels, model.predict(rows))


def test_the_graph_is_one_tree_ensemble_and_a_few_arithmetic_nodes_not_a_subgraph_per_tree():
    rows = np.random.default_rng(2).normal(size=(2_000, 12)).astype(np.float32)
    graph = onnx.load_from_string(to_onnx_bytes(IsolationForest(n_estimators=100, random_state=0).fit(rows), 12)).graph
    kinds = [node.op_type for node in graph.node]
    assert kinds.count("TreeEnsembleRegressor") == 1 and len(kinds) <= 8, kinds
    assert [output.name for output in graph.output] == ["label", "scores"]
