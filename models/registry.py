"""A versioned model registry in a folder (local disk or a mounted volume):

    <registry>/<version>/model.onnx
    <registry>/<version>/metadata.json   feature names and order, training window, symbols, sha256, metrics
    <registry>/LATEST                    the version new jobs and running jobs (hot swap) use

Versions are UTC timestamps (20260301T120000Z), so they sort in publication order. A version is
written to a temporary folder and renamed into place, and LATEST is replaced atomically, so a
reader never sees half a model.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass


class RegistryError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelVersion:
    version: str
    onnx_path: str
    metadata: dict


def _atomic_write(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def new_version(now: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))


def publish(registry: str, onnx_bytes: bytes, metadata: dict, version: str | None = None) -> ModelVersion:
    """Writes a new version and points LATEST at it."""
    os.makedirs(registry, exist_ok=True)
    version = version or new_version()
    while os.path.exists(os.path.join(registry, version)):  # two publications in one second
        version = version[:-1] + f".{int(time.time() * 1000) % 1000:03d}Z"
    staging = tempfile.mkdtemp(dir=registry, prefix=".staging-")
    metadata = dict(metadata, version=version, sha256=hashlib.sha256(onnx_bytes).hexdigest())
    with open(os.path.join(staging, "model.onnx"), "wb") as handle:
        handle.write(onnx_bytes)
    with open(os.path.join(staging, "metadata.json"), "w", encoding="utf-8") as handle:
        json.dump(metadata, handle, indent=2, sort_keys=True)
    os.rename(staging, os.path.join(registry, version))
    _atomic_write(os.path.join(registry, "LATEST"), version + "\n")
    return load(registry, version)


def latest_version(registry: str) -> str | None:
    try:
        with open(os.path.join(registry, "LATEST"), encoding="utf-8") as handle:
            return handle.read().strip() or None
    except FileNotFoundError:
        return None


def load(registry: str, version: str = "latest") -> ModelVersion:
    """A version's files, checked against the sha256 recorded at publication."""
    if version == "latest":
        version = latest_version(registry)
        if version is None:
            raise RegistryError(f"no model in {registry}: train one with `python -m models.train`")
    folder = os.path.join(registry, version)
    try:
        with open(os.path.join(folder, "metadata.json"), encoding="utf-8") as handle:
            metadata = json.load(handle)
        with open(os.path.join(folder, "model.onnx"), "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError as error:
        raise RegistryError(f"model version {version} is incomplete in {registry}: {error}") from None
    if digest != metadata.get("sha256"):
        raise RegistryError(f"model version {version}: model.onnx does not match its recorded sha256")
    return ModelVersion(version, os.path.join(folder, "model.onnx"), metadata)


def load_usable(registry: str, version: str = "latest") -> ModelVersion:
    """The version the job would score with, if it can: present, intact and trained on the job's
    feature set; else RegistryError or IncompatibleModel saying why. The one check behind the job's
    start (flink_jobs/anomaly_job.py) and `python -m models.train --if-missing` (demo, deployments)."""
    from flink_jobs.detectors.iforest import OnnxIsolationForest

    model = load(registry, version)
    OnnxIsolationForest.from_registry(model)
    return model


def remove(registry: str, version: str) -> None:
    shutil.rmtree(os.path.join(registry, version))


class ModelWatcher:
    """The model a running job scores with. With version 'latest' it looks at LATEST every
    `poll_seconds` and swaps in a newly published version between two micro-batches; a version
    that fails to load is logged and the current model stays."""

    def __init__(self, registry: str, version: str, poll_seconds: float, clock=time.monotonic):
        from flink_jobs.detectors.iforest import OnnxIsolationForest

        self._loader = OnnxIsolationForest.from_registry
        self.registry, self.follow_latest = registry, version == "latest"
        self.poll_seconds, self.clock = poll_seconds, clock
        self.model = self._loader(load(registry, version))
        self.next_check = clock() + poll_seconds
        self.swaps = 0

    def current(self):
        if self.follow_latest and self.clock() >= self.next_check:
            self.next_check = self.clock() + self.poll_seconds
            latest = latest_version(self.registry)
            if latest and latest != self.model.version:
                self._swap_to(latest)
        return self.model

    def _swap_to(self, version: str) -> None:
        import logging

        log = logging.getLogger("models.registry")
        try:
            self.model = self._loader(load(self.registry, version))
            self.swaps += 1
            log.info("now scoring with model %s", version)
        except (RegistryError, OSError, RuntimeError, ValueError) as error:
            log.error("kept model %s: could not load %s: %s", self.model.version, version, error)
