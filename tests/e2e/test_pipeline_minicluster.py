"""Replay -> real Kafka broker -> the PyFlink job in a local MiniCluster -> chDB, asserted exactly."""
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_DIR
from tests.e2e.checks import assert_store_holds_exactly, stored
from tests.e2e.conftest import read_report, replayed_planted_input, run_python, stack_env, unique

pytestmark = pytest.mark.e2e


def test_bounded_job_stores_every_trade_once_every_bad_message_as_dead_letter_and_detects_the_spikes(
        kafka_broker, trained_model, tmp_path):
    expected, env, chdb_path = replayed_planted_input(tmp_path, trained_model, "e2e-mini")

    report_path = str(tmp_path / "run.json")
    run_python(["flink_jobs/anomaly_job.py", "--bounded", "--group-id", unique("g"),
                "--run-report", report_path], env)
    first = stored(chdb_path)
    assert_store_holds_exactly(first, expected, trained_model.version)
    assert read_report(report_path)["net_runtime_seconds"] > 0

    # The same input again, from the start, into the same store: nothing is duplicated.
    run_python(["flink_jobs/anomaly_job.py", "--bounded", "--group-id", unique("g")], env)
    second = stored(chdb_path)
    assert second["raw_trade_rows"] >= first["unique_trades"]  # the rows were written again...
    assert_store_holds_exactly(second, expected, trained_model.version, replayed=True)  # ...and still count once each


def test_job_refuses_bad_configuration_before_starting(tmp_path):
    result = subprocess.run([sys.executable, "flink_jobs/anomaly_job.py", "--bounded"], cwd=PROJECT_DIR,
                            env=stack_env(ROLLING_WINDOW="1"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "ROLLING_WINDOW='1'" in result.stderr or "ROLLING_WINDOW=1" in result.stderr
