"""The report from a chDB store filled with real data (tests/store_data.py): one chart per symbol,
a self-contained page, and numbers that are the store's."""
import base64
import collections
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from config import load
from flink_jobs.store import open_store
from flink_jobs.report.__main__ import write_report
from flink_jobs.report.views import collect, signal_kind

from tests.conftest import PROJECT_DIR

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TOP = 10


class Tables(HTMLParser):
    """Every <table id=...> as a list of rows of cell texts, every <span id=...> text, every <img>."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.spans, self.images = {}, {}, []
        self._table = self._row = self._span = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._row.append("")
        elif tag == "span" and "id" in attrs:
            self._span = attrs["id"]
            self.spans[self._span] = ""
        elif tag == "img":
            self.images.append(attrs)

    def handle_endtag(self, tag):
        if tag in ("table", "tr"):
            self._row = None
        if tag == "table":
            self._table = None
        elif tag == "span":
            self._span = None

    def handle_data(self, data):
        if self._row is not None and self._row:
            self._row[-1] += data
        if self._span:
            self.spans[self._span] += data

    def rows(self, table_id):
        header, *body = self.tables[table_id]
        return [dict(zip(header, row)) for row in body]


@pytest.fixture(scope="module")
def written(filled_store_dir, tmp_path_factory):
    path, _ = filled_store_dir
    with open_store(load({"CHDB_PATH": path}).store) as store:
        result = write_report(store, str(tmp_path_factory.mktemp("report")), TOP, "test store")
        with open(result.index, encoding="utf-8") as handle:
            yield store, result, handle.read()


def test_one_price_image_per_symbol_inlined_as_png(written):
    store, result, text = written
    symbols = {r["symbol"] for r in store.query("SELECT DISTINCT symbol FROM trades")}
    assert set(result.images) == symbols | {"counts"}
    page = Tables(text)
    inlined = [img["src"] for img in page.images]
    assert len(inlined) == len(symbols) + 1
    for src in inlined:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    for symbol in symbols:
        with open(result.images[symbol], "rb") as handle:
            assert handle.read(8) == PNG_MAGIC
        assert f'id="price-{symbol}"' in text


def test_the_page_fetches_nothing(written):
    _, _, text = written
    assert not re.search(r"\b(src|href)\s*=\s*[\"'](?!data:)", text, re.I)
    assert not re.search(r"<(script|link|iframe|object)\b|@import|url\(", text, re.I)
    assert not re.search(r"https?://", text)


def test_the_numbers_are_the_stores(written):
    store, result, text = written
    page = Tables(text)
    trades = {r["symbol"]: r["n"] for r in store.query("SELECT symbol, count() AS n FROM trades FINAL GROUP BY symbol")}
    assert {r["symbol"]: int(r["trades"]) for r in page.rows("trades")} == trades
    assert int(page.spans["trades-total"]) == sum(trades.values())
    # kind computed here in Python from each stored anomaly's z-scores: the report's SQL must agree
    expected = collections.Counter(
        (r["method"], signal_kind(r["z_return"], r["volume_z"], r["rate_z"]))
        for r in store.query("SELECT method, z_return, volume_z, rate_z FROM anomalies FINAL"))
    assert {(r["method"], r["kind"]): int(r["anomalies"]) for r in page.rows("counts")} == dict(expected)
    assert int(page.spans["anomalies-total"]) == sum(expected.values()) == store.scalar(
        "SELECT count() FROM anomalies FINAL")
    assert int(page.spans["dead-letters-total"]) == store.scalar("SELECT count() FROM dead_letters FINAL") > 0
    assert {(r["stage"], r["reason_kind"]): int(r["messages"]) for r in page.rows("dead-letters")} == {
        (r["stage"], r["k"]): r["n"] for r in store.query(
            "SELECT stage, splitByChar(':', reason)[1] AS k, count() AS n FROM dead_letters FINAL GROUP BY stage, k")}


def test_the_anomaly_table_holds_the_most_severe_first_with_their_reasons(written):
    store, _, text = written
    rows = Tables(text).rows("top-anomalies")
    assert len(rows) == TOP
    rank = {"high": 3, "medium": 2, "low": 1}
    ranks = [rank[r["severity"]] for r in rows]
    assert ranks == sorted(ranks, reverse=True)
    assert ranks[0] == max(rank[s] for s in (r["severity"] for r in store.query("SELECT severity FROM anomalies")))
    assert all(r["reason"] and r["symbol"] in r["reason"] for r in rows)


def test_prices_come_from_the_bars_and_equal_those_from_the_trades(written):
    store, result, _ = written
    assert all(s.source.endswith("bars") for s in result.views.prices)
    store.query("CREATE DATABASE IF NOT EXISTS no_bars")
    store.query("CREATE TABLE no_bars.trades AS trades")
    store.query("INSERT INTO no_bars.trades SELECT * FROM trades")
    store.query("CREATE TABLE no_bars.anomalies AS anomalies")
    store.query("CREATE TABLE no_bars.dead_letters AS dead_letters")
    store.query("USE no_bars")
    try:
        from_trades = collect(store, TOP).prices
    finally:
        store.query(f"USE {store.database}")
    assert all(s.source == "trades" for s in from_trades)
    for bars, trades in zip(result.views.prices, from_trades):
        assert (bars.symbol, bars.times, bars.closes) == (trades.symbol, trades.times, trades.closes)


def test_an_empty_store_is_a_clear_error(tmp_path):
    env = {**os.environ, "CHDB_PATH": str(tmp_path / "empty"), "REPORT_DIR": str(tmp_path / "out")}
    done = subprocess.run([sys.executable, "-m", "flink_jobs.report"], cwd=PROJECT_DIR, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert "error: the store has no trades: run the job first (make demo)" in done.stderr
    assert not os.path.exists(tmp_path / "out" / "index.html")
