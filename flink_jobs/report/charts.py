"""PNG charts of the report's views, drawn with matplotlib's Agg backend (no display needed)."""
from __future__ import annotations

import datetime
import os
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from flink_jobs.report.views import KINDS, PriceSeries  # noqa: E402

METHOD_STYLE = {  # marker, colour: the three methods stay distinguishable on top of each other
    "zscore": ("o", "#d62728"),
    "iforest": ("^", "#9467bd"),
    "combined": ("*", "#ff7f0e"),
}


@contextmanager
def _png(path: str, figsize: tuple[float, float]):
    """A figure and its axes to draw on; laid out and saved to `path` as PNG, always closed."""
    fig, ax = plt.subplots(figsize=figsize, dpi=100)
    try:
        yield ax
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def price_chart(series: PriceSeries, path: str) -> str:
    with _png(path, (11, 3.6)) as ax:
        ax.plot(series.times, series.closes, color="#1f77b4", linewidth=0.9,
                label=f"close per {series.bucket_s} s ({series.source})")
        for method, (marker, colour) in METHOD_STYLE.items():
            points = [(t, p) for t, p, m in series.markers if m == method]
            if points:
                ax.scatter([t for t, _ in points], [p for _, p in points], marker=marker, s=46, color=colour,
                           edgecolors="black", linewidths=0.4, zorder=3, label=f"{method} ({len(points)})")
        ax.set_title(f"{series.symbol}: price with anomalies")
        locator = mdates.AutoDateLocator(tz=datetime.timezone.utc)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=datetime.timezone.utc))
        ax.set_xlabel("UTC")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    return path


def counts_chart(counts: list[dict], path: str) -> str:
    """Anomalies per method, one bar per kind."""
    methods = sorted({r["method"] for r in counts})
    with _png(path, (7, 3.2)) as ax:
        width = 0.8 / len(KINDS)
        for k, kind in enumerate(KINDS):
            values = [sum(r["anomalies"] for r in counts if r["method"] == m and r["kind"] == kind) for m in methods]
            ax.bar([i + k * width for i in range(len(methods))], values, width, label=kind)
        ax.set_xticks([i + width for i in range(len(methods))], methods)
        ax.set_ylabel("anomalies")
        ax.set_title("Anomalies per method and kind")
        ax.legend(title="kind", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return path


def image_name(symbol: str) -> str:
    return f"price-{symbol}.png"


def draw_all(views, out_dir: str) -> dict[str, str]:
    """{symbol or 'counts': PNG path} for every chart of the report."""
    os.makedirs(out_dir, exist_ok=True)
    images = {s.symbol: price_chart(s, os.path.join(out_dir, image_name(s.symbol))) for s in views.prices}
    if views.counts:
        images["counts"] = counts_chart(views.counts, os.path.join(out_dir, "anomaly-counts.png"))
    return images
