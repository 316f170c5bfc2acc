"""Counters and gauges in Prometheus text format, and the HTTP endpoints Kubernetes probes.

    GET /metrics  Prometheus text exposition (version 0.0.4)
    GET /healthz  200 while the process runs its loops (liveness)
    GET /readyz   200 when every websocket connection is open and Kafka is reachable, else 503 (readiness)

Standard library only: the set of metrics is small and fixed, and the project pins its packages.
"""
from __future__ import annotations

import collections
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                     for k, v in sorted(labels.items()))
    return "{" + inner + "}"


class Metrics:
    """Thread-safe counters by (name, labels), gauges read at scrape time, and a latency reservoir."""

    def __init__(self, prefix: str = "producer", latency_samples: int = 10_000):
        self.prefix = prefix
        self._counters: dict[tuple, float] = collections.defaultdict(float)
        self._help: dict[str, tuple[str, str]] = {}
        self._gauges: dict[str, Callable[[], dict]] = {}
        self._latencies = collections.deque(maxlen=latency_samples)
        self._latency_sum = 0.0
        self._latency_count = 0
        self._lock = threading.Lock()

    def describe(self, name: str, kind: str, help: str) -> None:
        self._help[name] = (kind, help)

    def inc(self, name: str, amount: float = 1, **labels) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] += amount

    def value(self, name: str, **labels) -> float:
        """A counter's value; without labels, the sum over every label set."""
        with self._lock:
            if labels:
                return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)
            return sum(v for (n, _), v in self._counters.items() if n == name)

    def by_label(self, name: str, label: str) -> dict:
        with self._lock:
            out = collections.Counter()
            for (n, labels), v in self._counters.items():
                if n == name:
                    out[dict(labels).get(label)] += v
            return dict(out)

    def gauge(self, name: str, read: Callable[[], float | dict], help: str) -> None:
        """A gauge read when scraped; read() returns a number, or {label tuple-of-pairs: number}."""
        self._help[name] = ("gauge", help)
        self._gauges[name] = read

    def observe_latency(self, seconds: float) -> None:
        with self._lock:
            self._latencies.append(seconds)
            self._latency_sum += seconds
            self._latency_count += 1

    def latency_quantiles(self, qs=(0.5, 0.99)) -> dict:
        with self._lock:
            values = sorted(self._latencies)
        if not values:
            return {}
        return {q: values[min(len(values) - 1, int(q * len(values)))] for q in qs}

    def render(self) -> str:
        lines = []
        with self._lock:
            counters = dict(self._counters)
            lat_sum, lat_count = self._latency_sum, self._latency_count
        names = sorted({n for n, _ in counters} | set(self._help))
        for name in names:
            full = f"{self.prefix}_{name}"
            kind, help = self._help.get(name, ("counter", name))
            if name in self._gauges:
                lines += [f"# HELP {full} {help}", f"# TYPE {full} gauge"]
                value = self._gauges[name]()
                items = value.items() if isinstance(value, dict) else [((), value)]
                lines += [f"{full}{_labels(dict(labels))} {v}" for labels, v in items]
                continue
            series = [(dict(labels), v) for (n, labels), v in counters.items() if n == name]
            if not series:
                continue
            lines += [f"# HELP {full} {help}", f"# TYPE {full} {kind}"]
            lines += [f"{full}{_labels(labels)} {v:g}" for labels, v in sorted(series, key=lambda s: sorted(s[0].items()))]
        full = f"{self.prefix}_send_latency_seconds"
        lines += [f"# HELP {full} Seconds from websocket receipt to Kafka acknowledgement", f"# TYPE {full} summary"]
        for q, v in self.latency_quantiles((0.5, 0.9, 0.99)).items():
            lines.append(f'{full}{{quantile="{q}"}} {v:.6f}')
        lines += [f"{full}_sum {lat_sum:.6f}", f"{full}_count {lat_count}"]
        return "\n".join(lines) + "\n"


class HealthServer:
    """/metrics, /healthz and /readyz on a port, in a daemon thread."""

    def __init__(self, port: int, metrics: Metrics, live: Callable[[], bool], ready: Callable[[], tuple[bool, str]],
                 host: str = "0.0.0.0"):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/metrics":
                    outer._answer(self, 200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
                elif self.path == "/healthz":
                    ok = live()
                    outer._answer(self, 200 if ok else 503, "ok\n" if ok else "stopped\n")
                elif self.path == "/readyz":
                    ok, why = ready()
                    outer._answer(self, 200 if ok else 503, (why or "ready") + "\n")
                else:
                    outer._answer(self, 404, "not found\n")

            def log_message(self, *args):   # scrapes every few seconds would flood the log
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    @staticmethod
    def _answer(handler, status: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def start(self) -> "HealthServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
