"""A compact ONNX graph for scikit-learn's IsolationForest, exported through skl2onnx.

skl2onnx's own IsolationForest converter writes every tree as its own small subgraph: 27 nodes
per tree, 2,710 for the job's 100 trees. onnxruntime pays a fixed cost per node and call, so one
`run` took 0.87 ms even for a single row, and the job scores a micro-batch every few
milliseconds when trades arrive slowly (docs/performance.md). The same function fits in one
TreeEnsembleRegressor and a handful of arithmetic nodes:

    path length of a tree at x = depth of x's leaf + c(training samples in that leaf)
    decision_function(x) = -2 ** (-(sum over trees) / (n_trees * c(max_samples))) - offset_
    label = -1 (outlier) where decision_function < 0, else 1

with c(n) the average path length of an unsuccessful search in a binary search tree of n
points, as in scikit-learn's IsolationForest. Registered as skl2onnx's converter for
IsolationForest, so `skl2onnx.to_onnx` produces it with the usual outputs ("label", "scores");
models/train.py checks every export against scikit-learn before it is saved.
"""
from __future__ import annotations

import numpy as np

EULER_GAMMA = 0.5772156649015329


def average_path_length(n_samples: np.ndarray) -> np.ndarray:
    """c(n) for each n: 0 for n <= 1, 1 for n = 2, else 2 (ln(n - 1) + γ) - 2 (n - 1) / n."""
    n = np.asarray(n_samples, dtype=np.float64)
    result = np.zeros_like(n)
    result[n == 2] = 1.0
    big = n > 2
    result[big] = 2.0 * (np.log(n[big] - 1.0) + EULER_GAMMA) - 2.0 * (n[big] - 1.0) / n[big]
    return result


def _float32_at_or_below(threshold: float) -> float:
    """The largest float32 <= threshold. Trees compare float32 inputs with float64 thresholds;
    with this float32 threshold `x <= t` holds for exactly the same float32 x."""
    t = np.float32(threshold)
    if float(t) > threshold:
        t = np.nextafter(t, np.float32(-np.inf))
    return float(t)


def _leaf_depths(tree) -> np.ndarray:
    depth = np.zeros(tree.node_count, dtype=np.int64)
    for node in range(tree.node_count):  # children always come after their parent
        for child in (tree.children_left[node], tree.children_right[node]):
            if child >= 0:
                depth[child] = depth[node] + 1
    return depth


def tree_ensemble_attributes(forest) -> dict:
    """TreeEnsembleRegressor attributes whose SUM over trees is the total path length."""
    attrs: dict[str, list] = {name: [] for name in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
        "nodes_truenodeids", "nodes_falsenodeids", "target_treeids", "target_nodeids", "target_ids",
        "target_weights")}
    for tree_id, (estimator, features) in enumerate(zip(forest.estimators_, forest.estimators_features_)):
        tree = estimator.tree_
        depth = _leaf_depths(tree)
        leaf_lengths = depth + average_path_length(tree.n_node_samples)
        for node in range(tree.node_count):
            left, right = int(tree.children_left[node]), int(tree.children_right[node])
            is_leaf = left < 0
            attrs["nodes_treeids"].append(tree_id)
            attrs["nodes_nodeids"].append(node)
            # The tree saw only its estimator's features, in that order: map back to input columns.
            attrs["nodes_featureids"].append(0 if is_leaf else int(features[tree.feature[node]]))
            attrs["nodes_modes"].append("LEAF" if is_leaf else "BRANCH_LEQ")
            attrs["nodes_values"].append(0.0 if is_leaf else _float32_at_or_below(float(tree.threshold[node])))
            attrs["nodes_truenodeids"].append(0 if is_leaf else left)
            attrs["nodes_falsenodeids"].append(0 if is_leaf else right)
            if is_leaf:
                attrs["target_treeids"].append(tree_id)
                attrs["target_nodeids"].append(node)
                attrs["target_ids"].append(0)
                attrs["target_weights"].append(float(leaf_lengths[node]))
    return attrs


def convert_isolation_forest(scope, operator, container):
    """skl2onnx converter: the compact graph described above."""
    from skl2onnx.proto import onnx_proto

    forest = operator.raw_operator
    label, scores = operator.outputs[0].full_name, operator.outputs[1].full_name

    def constant(name: str, value, dtype=onnx_proto.TensorProto.FLOAT, dims=()) -> str:
        unique = scope.get_unique_variable_name(name)
        container.add_initializer(unique, dtype, list(dims), value if dims else [value])
        return unique

    def node(op: str, inputs: list, name: str, **attrs) -> str:
        output = scope.get_unique_variable_name(name)
        container.add_node(op, inputs, [output], name=scope.get_unique_operator_name(name), **attrs)
        return output

    total = scope.get_unique_variable_name("path_length_sum")
    container.add_node("TreeEnsembleRegressor", [operator.inputs[0].full_name], [total],
                       op_domain="ai.onnx.ml", op_version=3, name=scope.get_unique_operator_name("PathLengths"),
                       n_targets=1, aggregate_function="SUM", post_transform="NONE", base_values=[0.0],
                       **tree_ensemble_attributes(forest))
    normaliser = len(forest.estimators_) * float(average_path_length([forest.max_samples_])[0])
    exponent = node("Mul", [total, constant("minus_inverse_normaliser", -1.0 / normaliser)], "exponent")
    power = node("Pow", [constant("two", 2.0), exponent], "power")
    container.add_node("Sub", [constant("minus_offset", -float(forest.offset_)), power], [scores],
                       name=scope.get_unique_operator_name("Decision"))
    is_outlier = node("Less", [scores, constant("zero", 0.0)], "is_outlier")
    container.add_node("Where", [is_outlier, constant("outlier", -1, onnx_proto.TensorProto.INT64),
                                 constant("inlier", 1, onnx_proto.TensorProto.INT64)], [label],
                       name=scope.get_unique_operator_name("Label"))


def register() -> None:
    """Makes skl2onnx convert IsolationForest with `convert_isolation_forest` (its parser and
    output shapes are kept: "label" int64 and "scores" float, both (N, 1))."""
    from skl2onnx import update_registered_converter
    from sklearn.ensemble import IsolationForest

    update_registered_converter(IsolationForest, "SklearnIsolationForest", _output_shapes,
                                convert_isolation_forest, overwrite=True,
                                options={"score_samples": [False]})  # the parser asks for it; no third output


def _output_shapes(operator) -> None:
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = Int64TensorType([rows, 1])
    operator.outputs[1].type = FloatTensorType([rows, 1])

