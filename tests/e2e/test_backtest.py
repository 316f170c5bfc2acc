"""The backtest command: the job over files (no broker), anomalies to the store and a CSV."""
import csv
import os

import pytest

from flink_jobs.backtest import CSV_COLUMNS
from flink_jobs.detectors.iforest import OnnxIsolationForest

from tests.e2e import planted
from tests.e2e.checks import stored
from tests.e2e.conftest import run_python, stack_env

pytestmark = pytest.mark.e2e


def test_backtest_writes_exactly_the_reference_anomalies_to_csv_and_store(trained_model, tmp_path):
    model = OnnxIsolationForest.from_registry(trained_model)
    expected = planted.build(str(tmp_path / "planted.jsonl"), model)
    out, chdb_path = tmp_path / "anomalies.csv", str(tmp_path / "chdb")
    env = stack_env(MODEL_REGISTRY=os.path.dirname(os.path.dirname(trained_model.onnx_path)), **planted.JOB_ENV)
    run_python(["-m", "flink_jobs.backtest", str(tmp_path / "planted.jsonl"), "--out", str(out),
                "--chdb-path", chdb_path], env)

    with open(out, encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CSV_COLUMNS
    assert {(r["symbol"], int(r["trade_id"]), r["method"]) for r in rows} == expected.anomalies
    assert len(rows) == len(expected.anomalies)
    assert {r["model_version"] for r in rows} == {trained_model.version}
    assert all(int(r["event_time"]) > 1_500_000_000_000 and r["reason"] for r in rows)
    assert stored(chdb_path)["trades"] == expected.trades


def test_a_second_backtest_into_the_same_store_reports_only_its_own_anomalies(trained_model, tmp_path):
    """Earlier runs' anomalies of the same trades stay in the store (replay-safe keys); the CSV of
    a run with other settings must not pick them up."""
    model = OnnxIsolationForest.from_registry(trained_model)
    expected = planted.build(str(tmp_path / "planted.jsonl"), model)
    chdb_path = str(tmp_path / "chdb")
    registry_dir = os.path.dirname(os.path.dirname(trained_model.onnx_path))
    for methods, out in (("zscore,iforest,combined", "all.csv"), ("zscore", "zscore.csv")):
        env = stack_env(MODEL_REGISTRY=registry_dir, **{**planted.JOB_ENV, "DETECTION_METHODS": methods})
        run_python(["-m", "flink_jobs.backtest", str(tmp_path / "planted.jsonl"), "--out", str(tmp_path / out),
                    "--chdb-path", chdb_path], env)
    with open(tmp_path / "zscore.csv", encoding="utf-8") as handle:
        second = {(r["symbol"], int(r["trade_id"]), r["method"]) for r in csv.DictReader(handle)}
    assert second == {a for a in expected.anomalies if a[2] == "zscore"}
    assert stored(chdb_path)["anomalies"] == expected.anomalies  # the first run's rows are still there
