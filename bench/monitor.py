"""CPU and memory of the pipeline's processes while a benchmark runs, sampled with psutil.

Processes are found by what they run, not by who started them (the broker and the Flink daemons
are started by scripts and detach): each sample walks the process table once and puts every
process of the stack into a role. A role's peak is the largest sum over its processes at one
sample; CPU seconds are those spent during the run: the last value seen per process minus its
value at the first sample (processes started later count from zero), summed, so processes that
ended during the run still count up to their last sample.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil

# (role, substrings of the command line that identify it); the first match wins.
ROLES = (
    ("kafka broker", ("kafka.Kafka",)),
    ("flink jobmanager", ("StandaloneSessionClusterEntrypoint",)),
    ("flink taskmanager", ("TaskManagerRunner",)),
    ("python workers", ("pyflink.fn_execution.beam.beam_boot", "pyflink.fn_execution.beam.beam_worker")),
    ("flink client", ("org.apache.flink.client.cli.CliFrontend", "anomaly_job.py")),
    ("baseline", ("bench.baseline_stream",)),
)


def role_of(cmdline: list[str], roots: tuple[str, ...]) -> str | None:
    joined = " ".join(cmdline)
    if not any(root in joined for root in roots):
        return None
    for role, needles in ROLES:
        if any(needle in joined for needle in needles):
            return role
    return None


@dataclass
class Sample:
    at: float
    rss_by_role: dict[str, int]


@dataclass
class Usage:
    samples: list[Sample] = field(default_factory=list)
    cpu_by_pid: dict[int, tuple[str, float]] = field(default_factory=dict)
    cpu_before: dict[int, float] = field(default_factory=dict)  # at the first sample
    peak_rss_by_pid: dict[int, tuple[str, int]] = field(default_factory=dict)

    def peak_rss(self) -> dict[str, int]:
        peaks: dict[str, int] = {}
        for sample in self.samples:
            for role, rss in sample.rss_by_role.items():
                peaks[role] = max(peaks.get(role, 0), rss)
        return peaks

    def largest_process_rss(self) -> dict[str, int]:
        largest: dict[str, int] = {}
        for role, rss in self.peak_rss_by_pid.values():
            largest[role] = max(largest.get(role, 0), rss)
        return largest

    def cpu_seconds(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, (role, seconds) in self.cpu_by_pid.items():
            totals[role] = totals.get(role, 0.0) + seconds - self.cpu_before.get(pid, 0.0)
        return totals


class Monitor(threading.Thread):
    """Samples every `interval_s` until stopped; processes are those whose command line
    mentions one of `roots` (the project's directory, so other users' stacks are not counted)."""

    def __init__(self, roots: tuple[str, ...], interval_s: float = 0.5):
        super().__init__(name="bench-monitor", daemon=True)
        self.roots, self.interval_s = roots, interval_s
        self.usage = Usage()
        self._stop_event = threading.Event()
        self._own_pid = os.getpid()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval_s)

    def sample(self) -> None:
        rss_by_role: dict[str, int] = {}
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                role = role_of(proc.info["cmdline"] or [], self.roots)
                if role is None or proc.info["pid"] == self._own_pid:
                    continue
                rss = proc.memory_info().rss
                cpu = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            pid = proc.info["pid"]
            if not self.usage.samples:
                self.usage.cpu_before[pid] = cpu.user + cpu.system
            rss_by_role[role] = rss_by_role.get(role, 0) + rss
            self.usage.cpu_by_pid[pid] = (role, cpu.user + cpu.system)
            if rss > self.usage.peak_rss_by_pid.get(pid, (role, 0))[1]:
                self.usage.peak_rss_by_pid[pid] = (role, rss)
        self.usage.samples.append(Sample(time.monotonic(), rss_by_role))

    def stop(self) -> Usage:
        self._stop_event.set()
        self.join()
        self.sample()
        return self.usage
