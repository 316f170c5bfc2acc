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
