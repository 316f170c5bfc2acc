"""The dashboards of deploy/grafana/dashboards/ and every SQL query in them.

`queries(dashboard)` walks panels (rows and collapsed rows included), template variables and
annotations, so the tests and any other reader see each query exactly once, with where it lives.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass

from deploy.grafana.macros import TimeRange, panel_interval_ms, parse_duration_ms

GRAFANA_DIR = os.path.dirname(os.path.abspath(__file__))
DASHBOARD_DIR = os.path.join(GRAFANA_DIR, "dashboards")
PROVISIONING_DIR = os.path.join(GRAFANA_DIR, "provisioning")
PLUGIN = "grafana-clickhouse-datasource"
DEFAULT_MAX_DATA_POINTS = 1000  # Grafana uses the panel's width in pixels; about this on a wide screen


@dataclass(frozen=True)
class Query:
    kind: str                # panel | variable | annotation
    where: str               # "panel 'Price ${symbol}' target A", for messages
    sql: str
    repeat: str | None = None   # the variable the panel repeats over, one copy per selected value
    time_series: bool = False   # a time-series panel: its first column must be the time
    max_data_points: int = DEFAULT_MAX_DATA_POINTS
    min_interval_ms: int = 1

    def interval_ms(self, time_range: TimeRange) -> int:
        return panel_interval_ms(time_range, self.max_data_points, self.min_interval_ms)


def dashboard_files() -> list[str]:
    return sorted(glob.glob(os.path.join(DASHBOARD_DIR, "*.json")))


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _panels_with_repeat(panels: list[dict]):
    """(panel, repeat variable) for every non-row panel; a repeated row repeats its panels."""
    row_repeat = None
    for panel in panels:
        if panel.get("type") == "row":
            row_repeat = panel.get("repeat")
            for inner in panel.get("panels", []):  # a collapsed row keeps its panels inside
                yield inner, inner.get("repeat") or row_repeat
            continue
        yield panel, panel.get("repeat") or row_repeat


def queries(dashboard: dict) -> list[Query]:
    found = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            sql = variable.get("query")
            sql = sql.get("rawSql", sql.get("query")) if isinstance(sql, dict) else sql
            found.append(Query("variable", f"variable ${variable['name']}", sql))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("datasource", {}).get("type") == PLUGIN:
            found.append(Query("annotation", f"annotation {annotation['name']!r}", annotation["target"]["rawSql"]))
    for panel, repeat in _panels_with_repeat(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "rawSql" not in target:
                continue
            found.append(Query(
                "panel", f"panel {panel.get('title')!r} target {target.get('refId')}", target["rawSql"], repeat,
                time_series=panel.get("type") == "timeseries" and target.get("format") == 0,
                max_data_points=panel.get("maxDataPoints", DEFAULT_MAX_DATA_POINTS),
                min_interval_ms=parse_duration_ms(panel["interval"]) if panel.get("interval") else 1))
    return found


def variable_definitions(dashboard: dict) -> list[dict]:
    """Template variables in dashboard order (later ones may use earlier ones)."""
    return list(dashboard.get("templating", {}).get("list", []))
