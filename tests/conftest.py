"""Shared fixtures: real sample data from producer/samples, made small where a test needs it."""
from __future__ import annotations

import csv
import os
import sys

import pytest

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(PROJECT_DIR, "producer", "samples")
sys.path.insert(0, PROJECT_DIR)


def sample_path(name: str) -> str:
    return os.path.join(SAMPLES, name)


def read_sample_trades(name: str) -> list[list[str]]:
    """Rows of a bundled Binance trades CSV, header dropped."""
    with open(sample_path(name), encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row]
    return rows[1:] if rows[0][0] == "id" else rows


@pytest.fixture(scope="session")
def eth_prices() -> list[float]:
    """1,000 real ETHUSDT trade prices."""
    return [float(r[1]) for r in read_sample_trades("ETHUSDT-trades-2023-02-02.csv")]


@pytest.fixture(scope="session")
def xrpeth_prices() -> list[float]:
    """5,000 real XRPETH aggregate trade prices."""
    return [float(r[1]) for r in read_sample_trades("XRPETH-trades-2019-10-11.csv")]
