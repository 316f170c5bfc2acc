"""The same job submitted with `flink run` to a real standalone Flink cluster, same assertions.

At parallelism 1, where the scoring operator inserts the trades rows into chDB itself
(STORE_TRADES_FROM_SCORING) and shares the one Python worker's store with the sink, which writes
the rest; the MiniCluster test and the fault tests run the default parallelism, 2, where every
row goes through the sink."""
import os
import subprocess

import pytest

from tests.conftest import PROJECT_DIR
from tests.e2e.checks import assert_store_holds_exactly, stored
from tests.e2e.conftest import JOB_TIMEOUT_S, replayed_planted_input, unique

pytestmark = pytest.mark.e2e


def test_flink_run_on_a_standalone_cluster_stores_every_trade_once_and_detects_the_spikes(
        kafka_broker, flink_cluster, trained_model, tmp_path):
    expected, env, chdb_path = replayed_planted_input(tmp_path, trained_model, "e2e-cluster", FLINK_PARALLELISM=1)

    submit = subprocess.run(
        ["bash", os.path.join(PROJECT_DIR, "deploy", "local", "flink-cluster.sh"), "submit",
         "--bounded", "--group-id", unique("g")],
        env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert submit.returncode == 0, f"flink run failed:\n{submit.stdout[-4000:]}\n{submit.stderr[-6000:]}"
    assert "Job has been submitted with JobID" in submit.stdout + submit.stderr

    assert "trades rows: inserted by the scoring operator" in submit.stdout + submit.stderr
    assert_store_holds_exactly(stored(chdb_path), expected, trained_model.version)
