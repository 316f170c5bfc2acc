"""Fault injection on the real stack: the standalone cluster's REST API and processes, a paced
producer, memory sampling from /proc, and the end of a run (drain, then read the store)."""
from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

from flink_jobs.store import StoreError

from tests.conftest import PROJECT_DIR, process_alive as alive
from tests.e2e.checks import stored
from tests.e2e.conftest import BOOTSTRAP, STACK_ENV, TEST_RUN_DIR, unique, wait_until_consumed

CLUSTER_SCRIPT = os.path.join(PROJECT_DIR, "deploy", "local", "flink-cluster.sh")
FLINK_DIR = os.path.join(TEST_RUN_DIR, "flink")


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.5):
    """Polls until predicate() is truthy and returns its value; fails naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s:.0f} s")
        time.sleep(poll_s)


def fault_job_env(env: dict, tmp_path, **extra) -> dict:
    """Job settings of the fault tests: a checkpoint a second into a directory of the test's own,
    a consumer group of its own, and a restart strategy set by the job itself (fixed-delay)."""
    return {**env, "CHECKPOINT_INTERVAL_MS": "1000", "CHECKPOINT_DIR": f"file://{tmp_path}/checkpoints",
            "KAFKA_GROUP_ID": unique("g"), "RESTART_STRATEGY": "fixed-delay", "RESTART_ATTEMPTS": "5",
            "RESTART_DELAY_MS": "1000", **{k: str(v) for k, v in extra.items()}}


class Cluster:
    """The session's standalone cluster: its REST API and the project's script."""

    def __init__(self):
        self.base = f"http://localhost:{STACK_ENV['FLINK_REST_PORT']}"

    def get(self, path: str):
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            return json.load(response)

    def script(self, *args: str, env: dict | None = None, timeout: float = 240) -> str:
        """Runs deploy/local/flink-cluster.sh; returns its standard output."""
        result = subprocess.run(["bash", CLUSTER_SCRIPT, *args], env=env or {**os.environ, **STACK_ENV},
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"flink-cluster.sh {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
        return result.stdout

    def submit(self, env: dict, *job_args: str, resume_from: str | None = None) -> str:
        """Submits the job detached (optionally from a savepoint or checkpoint); returns its id."""
        args = ["submit", "--detached"] + (["--from", resume_from] if resume_from else []) + list(job_args)
        output = self.script(*args, env=env)
        return re.search(r"JobID ([0-9a-f]{32})", output).group(1)

    def job(self, job_id: str) -> dict:
        return self.get(f"/jobs/{job_id}")

    def all_running(self, job_id: str) -> bool:
        job = self.job(job_id)
        return job["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"])

    def vertex(self, job_id: str, prefix: str) -> str:
        return next(v["id"] for v in self.job(job_id)["vertices"] if v["name"].startswith(prefix))

    def metric(self, job_id: str, vertex_prefix: str, name: str, agg: str = "sum") -> float:
        """A metric of one vertex over its subtasks (Flink's REST metrics refresh every 10 s)."""
        vertex = self.vertex(job_id, vertex_prefix)
        values = self.get(f"/jobs/{job_id}/vertices/{vertex}/subtasks/metrics?get={name}&agg={agg}")
        return float(values[0][agg]) if values else 0.0

    def rows_written(self, job_id: str) -> float:
        """Rows inserted: by the store sink, and by the scoring operator where it writes the trades
        itself (STORE_TRADES_FROM_SCORING at parallelism 1)."""
        return self.metric(job_id, "store-sink", "store-sink-chdb.rows_written") + \
            self.metric(job_id, "features-and-scoring", "features-and-scoring.rows_written")

    def failures(self, job_id: str) -> int:
        """Failures the job recovered from (or not), from its exception history: unlike the
        numRestarts metric, not refreshed only every 10 s."""
        return len(self.get(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"])

    def checkpoints(self, job_id: str) -> dict:
        return self.get(f"/jobs/{job_id}/checkpoints")

    def completed_checkpoints(self, job_id: str) -> int:
        return self.checkpoints(job_id)["counts"]["completed"]

    def restored_from(self, job_id: str) -> str | None:
        restored = self.checkpoints(job_id)["latest"].get("restored")
        return restored and restored["external_path"]

    def wait_mid_stream(self, job_id: str, rows: int = 1000, timeout_s: float = 180) -> None:
        """Until a checkpoint has completed and the store has rows: the moment to disturb the job."""
        wait_until(lambda: self.completed_checkpoints(job_id) >= 1 and self.rows_written(job_id) >= rows,
                   timeout_s, f"job {job_id}: a completed checkpoint and {rows} rows written")

    def finish(self, job_id: str, env: dict, timeout_s: float = 240) -> None:
        """Once the job has consumed its topic, stops it with --drain: event time jumps to the end, so
        the sink's buffer and the last bars are written, as at the end of a bounded input."""
        wait_until_consumed(env["KAFKA_TOPIC"], env["KAFKA_GROUP_ID"], timeout_s)
        self.script("stop-with-savepoint", job_id, "--drain", env=env)
        wait_until(lambda: self.job(job_id)["state"] == "FINISHED", 60, f"job {job_id} finished")


def daemon_pids(kind: str) -> list[int]:
    """Live pids of the test cluster's daemons: kind 'taskexecutor' or 'standalonesession'."""
    pids = []
    for path in glob.glob(os.path.join(FLINK_DIR, f"flink-*-{kind}.pid")):
        with open(path, encoding="ascii") as handle:
            pids += [int(p) for p in handle.read().split() if p.strip()]
    return [p for p in pids if alive(p)]


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def python_workers(taskmanager_pid: int) -> list[int]:
    """The Python worker processes (beam_boot) under a TaskManager JVM."""
    workers, todo = [], children(taskmanager_pid)
    while todo:
        pid = todo.pop()
        todo += children(pid)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if b"beam_boot" in handle.read():
                    workers.append(pid)
        except OSError:
            pass
    return workers


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class MemorySampler:
    """Samples the RSS of every TaskManager JVM and Python worker of the test cluster from /proc
    every `interval_s` in a thread, keeping each kind's peak and the worker RSS over time."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.peak_jvm_mb = 0.0
        self.peak_worker_mb = 0.0
        self.worker_series: list[tuple[float, float]] = []   # (monotonic time, largest worker RSS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.is_set():
            for tm in daemon_pids("taskexecutor"):
                self.peak_jvm_mb = max(self.peak_jvm_mb, rss_mb(tm))
                workers = [rss_mb(w) for w in python_workers(tm)]
                if workers:
                    self.peak_worker_mb = max(self.peak_worker_mb, *workers)
                    self.worker_series.append((time.monotonic(), max(workers)))
            self._stop.wait(self.interval_s)


class PacedProducer:
    """`python -m producer replay FILE --rate N` in the background: a steady stream to disturb."""

    def __init__(self, path: str, env: dict, rate: float):
        self.started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "producer", "replay", path, "--create-topic",
                                         "--rate", str(rate)], cwd=PROJECT_DIR, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout_s: float = 300) -> str:
        output, _ = self.process.communicate(timeout=timeout_s)
        assert self.process.returncode == 0 and "failed 0" in output, f"producer failed:\n{output[-3000:]}"
        return output

    def kill(self):
        if self.running():
            self.process.kill()
            self.process.communicate()


def stored_once_released(chdb_path: str, timeout_s: float = 60) -> dict:
    """What the store holds, read once the job's Python worker has let go of the embedded store."""
    def attempt():
        try:
            return stored(chdb_path)
        except StoreError:
            return None
    return wait_until(attempt, timeout_s, f"the store at {chdb_path} released by the job", poll_s=1.0)


def committed_offsets(topic: str, group: str) -> int:
    """The consumer group's committed offsets on the topic, summed (the job commits on checkpoints);
    -1 while the broker cannot tell (down, or loading its offsets after a restart)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        try:
            offsets = admin.list_group_offsets(group).get(group, {})
        finally:
            admin.close()
    except KafkaError:
        return -1
    return sum(o.offset for tp, o in offsets.items() if tp.topic == topic and o.offset >= 0)
