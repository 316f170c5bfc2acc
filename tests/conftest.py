"""Shared fixtures: real sample data from producer/samples, made small where a test needs it."""
from __future__ import annotations

import csv
import os
import sys

import pytest
from hypothesis import HealthCheck, settings

# Property-based tests (hypothesis): the same examples on every run in CI, and quick; "deep" for a
# longer, random search by hand (HYPOTHESIS_PROFILE=deep).
settings.register_profile("ci", max_examples=500, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=20_000, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(PROJECT_DIR, "producer", "samples")
sys.path.insert(0, PROJECT_DIR)


def process_alive(pid: int) -> bool:
    """True while the process runs; a killed one its parent has not reaped yet (a zombie) is dead."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def sample_path(name: str) -> str:
    return os.path.join(SAMPLES, name)


def read_sample_trades(name: str) -> list[list[str]]:
    """Rows of a bundled Binance trades CSV, header dropped."""
    with open(sample_path(name), encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row]
    return rows[1:] if rows[0][0] == "id" else rows


def self_signed_certificate(folder) -> tuple[str, str]:
    """(certificate, key) PEM files of a fresh self-signed certificate for 127.0.0.1 and localhost,
    made with the openssl command; the certificate is its own CA."""
    import subprocess

    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="session")
def eth_prices() -> list[float]:
    """1,000 real ETHUSDT trade prices."""
    return [float(r[1]) for r in read_sample_trades("ETHUSDT-trades-2023-02-02.csv")]


@pytest.fixture(scope="session")
def xrpeth_prices() -> list[float]:
    """5,000 real XRPETH aggregate trade prices."""
    return [float(r[1]) for r in read_sample_trades("XRPETH-trades-2019-10-11.csv")]


@pytest.fixture(scope="session")
def filled_store_dir(tmp_path_factory):
    """(CHDB_PATH, Filled) of a store filled like a run of the job (tests/store_data.py); closed again,
    since one process can hold one chDB directory at a time: each user opens it for its own module."""
    import time

    from config import load
    from flink_jobs.store import open_store
    from tests.store_data import fill

    path = str(tmp_path_factory.mktemp("filled") / "chdb")
    with open_store(load({"CHDB_PATH": path}).store) as store:
        filled = fill(store, int(time.time() * 1000))
    return path, filled
