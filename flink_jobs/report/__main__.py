"""Renders the store's views to PNG images and one self-contained HTML page.

    python -m flink_jobs.report [--out DIR] [--top N]

Reads the store the configuration names (CHDB_PATH or CLICKHOUSE_URL); with the embedded store run
it after the job has finished (one owner per directory). Prints the page's path.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from dataclasses import dataclass

import config as app_config
from config import ConfigError
from flink_jobs.store import StoreError, open_store, redacted
from flink_jobs.report import charts, page
from flink_jobs.report.views import ReportError, Views, collect


@dataclass
class Written:
    index: str
    images: dict
    views: Views
    seconds: float


def describe_store(cfg) -> str:
    if cfg.store.backend == "chdb":
        return f"embedded chDB at {cfg.store.chdb_path}, database {cfg.store.database}"
    return f"ClickHouse at {redacted(cfg.store.clickhouse_url)}, database {cfg.store.database}"


def write_report(store, out_dir: str, top: int, store_description: str) -> Written:
    started = time.monotonic()
    views = collect(store, top)
    images = charts.draw_all(views, out_dir)
    index = os.path.join(out_dir, "index.html")
    with open(index, "w", encoding="utf-8") as handle:
        handle.write(page.render(views, images, store_description, dt.datetime.now(dt.timezone.utc)))
    return Written(index, images, views, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flink_jobs.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="folder for index.html and the PNG images (default REPORT_DIR)")
    parser.add_argument("--top", type=int, help="anomalies in the table (default REPORT_TOP_ANOMALIES)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = app_config.load()
        out_dir = os.path.abspath(args.out or cfg.report.out_dir)
        with open_store(cfg.store) as store:
            written = write_report(store, out_dir, args.top or cfg.report.top_anomalies, describe_store(cfg))
    except (ConfigError, StoreError, ReportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    v = written.views
    print(f"Report: {written.index}")
    print(f"  {len(v.prices)} symbols, {sum(r['trades'] for r in v.trades)} trades, {v.anomalies_total} anomalies, "
          f"{v.dead_letters_total} dead letters; {len(written.images)} images; rendered in {written.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
