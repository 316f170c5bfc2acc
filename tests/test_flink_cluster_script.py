"""deploy/local/flink-cluster.sh without a cluster: its help, and which checkpoint it resumes from."""
from __future__ import annotations

import os
import subprocess

from config import PROJECT_DIR

SCRIPT = os.path.join(PROJECT_DIR, "deploy", "local", "flink-cluster.sh")


def cluster_script(*args, env=None):
    environ = {k: v for k, v in os.environ.items() if k != "CHECKPOINT_DIR"}
    environ.update(env or {})
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=30, env=environ)


def test_help_names_every_command_and_a_wrong_one_is_refused():
    result = cluster_script("--help")
    assert result.returncode == 0
    for command in ("start", "stop", "status", "submit [--detached] [--from PATH]", "jobs", "savepoint JOB_ID",
                    "stop-with-savepoint JOB_ID", "--drain", "cancel JOB_ID", "latest-checkpoint", "add-taskmanager"):
        assert command in result.stdout
    wrong = cluster_script("restart-everything")
    assert wrong.returncode == 2 and "latest-checkpoint" in wrong.stderr


def test_latest_checkpoint_is_the_newest_completed_one_of_any_job(tmp_path):
    def checkpoint(job, n, completed, mtime):
        path = tmp_path / job / f"chk-{n}"
        path.mkdir(parents=True)
        if completed:
            (path / "_metadata").write_bytes(b"x")
            os.utime(path / "_metadata", (mtime, mtime))
        return path

    checkpoint("a" * 32, 7, True, 1_000)
    newest = checkpoint("b" * 32, 3, True, 2_000)   # the job resumed after the first one
    checkpoint("b" * 32, 4, False, 0)               # in progress when the cluster died: no _metadata
    (tmp_path / ("b" * 32) / "shared").mkdir()
    result = cluster_script("latest-checkpoint", f"file://{tmp_path}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"file://{newest}"
    # CHECKPOINT_DIR, the job's own setting, is the default
    assert cluster_script("latest-checkpoint", env={"CHECKPOINT_DIR": str(tmp_path)}).stdout.strip() == f"file://{newest}"


def test_latest_checkpoint_fails_when_there_is_none(tmp_path):
    (tmp_path / ("c" * 32) / "chk-1").mkdir(parents=True)
    result = cluster_script("latest-checkpoint", str(tmp_path))
    assert result.returncode == 1 and result.stdout == ""
    assert "no completed checkpoint" in result.stderr


def test_stop_removes_the_scratch_stopped_taskmanagers_left(tmp_path):
    # A TaskManager's folder of job jars and shipped Python files outlives it; nothing else removes it.
    leftover = tmp_path / "flink" / "tmp" / "tm_localhost:40695-2d3dba" / "blobStorage" / "job_1" / "blob_p-1"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"x" * 1000)
    (tmp_path / "flink" / "checkpoints" / "job" / "chk-1").mkdir(parents=True)
    result = cluster_script("stop", env={"RUN_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "removing the scratch" in result.stderr
    assert list((tmp_path / "flink" / "tmp").iterdir()) == []
    # checkpoints (and savepoints, logs) are the user's, not scratch
    assert (tmp_path / "flink" / "checkpoints" / "job" / "chk-1").is_dir()
