"""A Python worker exits when the JVM that launched it is killed (operators.exit_with_taskmanager).

Real processes in the layout Flink's process mode uses: a process named `java` (the TaskManager),
a bash runner under it (pyflink-udf-runner.sh), and the Python worker under that."""
import os
import signal
import subprocess
import sys
import time

from tests.conftest import PROJECT_DIR, process_alive as alive

# The worker's log handler hangs, as Beam's does once its stream to the dead TaskManager is gone:
# the exit must not go through logging.
WORKER = ("import logging, os, sys, threading, time\n"
          "class Stuck(logging.Handler):\n"
          "    def emit(self, record): threading.Event().wait()\n"
          "    def flush(self): threading.Event().wait()\n"
          "logging.getLogger().addHandler(Stuck())\n"
          "from flink_jobs.operators import exit_with_taskmanager\n"
          "exit_with_taskmanager(poll_s=0.1)\n"
          "print(os.getpid(), flush=True)\n"
          "time.sleep(120)\n")


def wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_python_worker_exits_soon_after_its_taskmanager_jvm_is_killed_and_not_before(tmp_path):
    # The stand-in TaskManager is a Python interpreter under the name `java` (its comm is "java").
    java = tmp_path / "java"
    java.symlink_to(sys.executable)
    runner = f"exec_worker() {{ {sys.executable} -c \"$1\"; }}; exec_worker \"$WORKER\""
    taskmanager = subprocess.Popen(
        [str(java), "-c", "import subprocess, sys; subprocess.run(['bash', '-c', sys.argv[1]])", runner],
        cwd=PROJECT_DIR, env={**os.environ, "WORKER": WORKER, "PYTHONPATH": PROJECT_DIR},
        stdout=subprocess.PIPE, text=True)
    worker = None
    try:
        worker = int(taskmanager.stdout.readline())
        time.sleep(1.0)
        assert alive(worker), "the worker must keep running while its JVM lives"
        taskmanager.send_signal(signal.SIGKILL)
        # Not reaped yet: a zombie, as a killed TaskManager daemon stays until init reaps it.
        assert wait_for(lambda: not alive(worker), 10), "the orphaned worker did not exit"
        taskmanager.wait(timeout=10)
    finally:
        if taskmanager.poll() is None:
            taskmanager.kill()
        if worker and alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_a_worker_without_a_jvm_among_its_ancestors_watches_nothing():
    result = subprocess.run(
        [sys.executable, "-c", "from flink_jobs import operators as o; o.exit_with_taskmanager(); "
                               "print(o._java_ancestor(), o._taskmanager_watch.name)"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "MainThread"]
