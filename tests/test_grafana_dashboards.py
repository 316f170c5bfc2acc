"""Every query of every Grafana dashboard (panels, repeated panels, variables, annotations) runs
against the real schema filled with real data in chDB, expanded the way Grafana and the ClickHouse
plugin expand it, and returns rows; plus the expander against the plugin's documented examples and
the provisioning files."""
import os
import re

import pytest
import yaml

import config
from config import load
from deploy.grafana import dashboards as grafana
from deploy.grafana.macros import (MacroError, Selection, TimeRange, expand_macros, panel_interval_ms,
                                   render)
from flink_jobs.store import open_store

DASHBOARD_FILES = grafana.dashboard_files()
MINUTE = 60_000


@pytest.fixture(scope="module")
def store(filled_store_dir):
    path, filled = filled_store_dir
    with open_store(load({"CHDB_PATH": path}).store) as opened:
        yield opened, filled


def scenarios(filled):
    """(name, time range, which values each variable gets, values picked by name): All over the whole
    span; two picked values per variable (explicit IN lists); the last five minutes (1 s bars, short
    intervals) of ETHUSDT, the symbol that traded and had anomalies then."""
    whole = TimeRange(filled.first_ms - MINUTE, filled.filled_at_ms + MINUTE)
    recent = TimeRange(filled.filled_at_ms - 5 * MINUTE, filled.filled_at_ms + MINUTE)
    return [("all values, whole span", whole, "all", {}), ("two picked values, whole span", whole, "two", {}),
            ("ETHUSDT, last 5 minutes", recent, "all", {"symbol": ("ETHUSDT",)})]


def resolve_variables(dashboard, store, time_range, pick, picked_by_name) -> dict:
    """The variables' options as Grafana gets them (query variables run their SQL), then selected."""
    selections = {}
    for variable in grafana.variable_definitions(dashboard):
        if variable["type"] == "query":
            sql = render(variable["query"], time_range, panel_interval_ms(time_range), selections)
            options = [next(iter(row.values())) for row in store.query(sql)]
        elif variable["type"] == "custom":
            options = [v.strip() for v in variable["query"].split(",")]
        else:
            continue
        assert options, f"variable ${variable['name']} has no options"
        if variable["name"] in picked_by_name:
            chosen = picked_by_name[variable["name"]]
            assert set(chosen) <= set(options), f"{chosen} not among the options of ${variable['name']}"
            selections[variable["name"]] = Selection(tuple(chosen))
            continue
        chosen = options if pick == "all" else options[:2]
        selections[variable["name"]] = Selection(tuple(chosen), all_selected=pick == "all" and variable["includeAll"])
    return selections


def runs_of(query, selections):
    """One selection per copy Grafana shows: a repeated panel once per selected value."""
    if not query.repeat:
        return [selections]
    return [{**selections, query.repeat: Selection((value,), multi=False)}
            for value in selections[query.repeat].values]


def starts_with_a_time_column(store, sql, rows) -> bool:
    if next(iter(rows[0])) != "time":
        return False
    kind = store.scalar(f"SELECT toTypeName(time) FROM ({sql}) LIMIT 1")
    return kind.startswith("DateTime")


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=os.path.basename)
def test_every_query_of_the_dashboard_returns_rows_from_the_real_schema(store, path):
    store, filled = store
    dashboard = grafana.load(path)
    problems, ran = [], 0
    for scenario, time_range, pick, picked_by_name in scenarios(filled):
        selections = resolve_variables(dashboard, store, time_range, pick, picked_by_name)
        for query in grafana.queries(dashboard):
            for selection in runs_of(query, selections):
                sql = render(query.sql, time_range, query.interval_ms(time_range), selection)
                try:
                    rows = store.query(sql)
                except Exception as error:  # noqa: BLE001 - reported below with the panel named
                    problems.append(f"{scenario}: {query.where}: {str(error).splitlines()[0][:300]}")
                    continue
                ran += 1
                if not rows:
                    problems.append(f"{scenario}: {query.where}: no rows\n{sql}")
                elif query.time_series and not starts_with_a_time_column(store, sql, rows):
                    problems.append(f"{scenario}: {query.where}: a time series must start with a DateTime 'time'")
    assert not problems, "\n".join(problems)
    assert ran >= 3 * len(grafana.queries(dashboard))


def test_the_four_dashboards_exist_and_no_panel_escapes_the_walk():
    names = sorted(os.path.basename(p) for p in DASHBOARD_FILES)
    assert names == ["anomaly-feed.json", "detector-health.json", "market-overview.json", "model-view.json"]
    for path in DASHBOARD_FILES:
        dashboard = grafana.load(path)
        walked = {q.where for q in grafana.queries(dashboard) if q.kind == "panel"}
        for panel, _ in grafana._panels_with_repeat(dashboard["panels"]):
            assert panel.get("targets"), f"{path}: panel {panel['title']!r} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["type"] == grafana.PLUGIN and target["editorType"] == "sql"
                assert f"panel {panel['title']!r} target {target['refId']}" in walked


def test_every_multi_value_reference_names_its_format():
    for path in DASHBOARD_FILES:
        dashboard = grafana.load(path)
        multi = {v["name"] for v in grafana.variable_definitions(dashboard) if v.get("multi")}
        for query in grafana.queries(dashboard):
            # a bare $var is only right as $__conditionalAll's second argument, which names the variable
            sql = re.sub(r",\s*\$\w+\s*\)", ")", query.sql)
            bare = {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)\b", sql)} & multi
            assert not bare, f"{path}: {query.where}: {bare} without a format (write ${{name:singlequote}})"


def test_the_market_overview_has_a_multi_value_symbol_variable_and_anomaly_markers():
    dashboard = grafana.load(os.path.join(grafana.DASHBOARD_DIR, "market-overview.json"))
    symbol = next(v for v in dashboard["templating"]["list"] if v["name"] == "symbol")
    assert symbol["multi"] and symbol["includeAll"]
    assert any(a.get("datasource", {}).get("type") == grafana.PLUGIN and "FROM anomalies" in a["target"]["rawSql"]
               for a in dashboard["annotations"]["list"])
    price = next(q for q in grafana.queries(dashboard) if q.where.startswith("panel 'Price") and "anomalies" in q.sql)
    assert price.repeat == "symbol"


# ------------------------------------------------------------------ the expander itself

DOCS_RANGE = TimeRange(1415792726123, 1447328726456)  # the plugin documentation's example range


@pytest.mark.parametrize("macro, expected", [
    ("$__timeFilter(time)", "time >= toDateTime(1415792726) AND time <= toDateTime(1447328726)"),
    ("$__timeFilter_ms(time)",
     "time >= fromUnixTimestamp64Milli(1415792726123) AND time <= fromUnixTimestamp64Milli(1447328726456)"),
    ("$__dateFilter(date)", "date >= toDate('2014-11-12') AND date <= toDate('2015-11-12')"),
    ("$__fromTime", "toDateTime(1415792726)"),
    ("$__toTime_ms", "fromUnixTimestamp64Milli(1447328726456)"),
    ("$__interval_s", "20"),
    ("$__timeInterval(column)", "toStartOfInterval(toDateTime(column), INTERVAL 20 second)"),
    ("$__timeInterval_ms(column)", "toStartOfInterval(toDateTime64(column, 3), INTERVAL 20000 millisecond)"),
])
def test_macros_expand_as_the_plugin_documents(macro, expected):
    assert expand_macros(macro, DOCS_RANGE, 20_000) == expected


def test_an_interval_below_a_second_is_one_second_for_the_seconds_macros():
    assert expand_macros("$__interval_s", DOCS_RANGE, 200) == "1"


def test_variables_expand_like_grafana_with_all_and_conditional_all():
    r = TimeRange(0, 3_600_000)
    sql = "WHERE $__conditionalAll(symbol IN (${symbol:singlequote}), $symbol) AND s = ${one:sqlstring} AND i = '$__interval'"
    picked = {"symbol": Selection(("BTCUSDT", "O'X")), "one": Selection(("a'b",), multi=False)}
    assert render(sql, r, 60_000, picked) == \
        "WHERE symbol IN ('BTCUSDT','O\\'X') AND s = 'a''b' AND i = '1m'"
    everything = {**picked, "symbol": Selection(("BTCUSDT", "ETHUSDT"), all_selected=True)}
    assert render(sql, r, 60_000, everything).startswith("WHERE 1=1 AND")


def test_unknown_macros_and_unformatted_multi_values_are_errors():
    r = TimeRange(0, 1000)
    with pytest.raises(MacroError, match="not a macro"):
        render("WHERE $__timeFitler(t)", r, 1000, {})
    with pytest.raises(MacroError, match="multi-value"):
        render("WHERE s IN ($symbol)", r, 1000, {"symbol": Selection(("A", "B"))})


def test_the_panel_interval_follows_the_range_and_the_panel_minimum():
    six_hours = TimeRange(0, 6 * 3_600_000)
    assert panel_interval_ms(six_hours, 1000) == 20_000           # 21.6 s -> 20 s
    assert panel_interval_ms(TimeRange(0, 300_000), 1500, 1000) == 1000  # 0.2 s, but min interval 1 s


# ------------------------------------------------------------------ provisioning

def _yaml(*parts):
    with open(os.path.join(grafana.PROVISIONING_DIR, *parts), encoding="utf-8") as handle:
        return handle.read()


def test_the_data_source_is_the_official_plugin_with_credentials_from_the_environment():
    text = _yaml("datasources", "clickhouse.yaml")
    (source,) = yaml.safe_load(text)["datasources"]
    assert source["type"] == grafana.PLUGIN
    json_data, secure = source["jsonData"], source["secureJsonData"]
    for key in ("host", "port", "protocol", "username", "defaultDatabase", "secure"):
        assert re.fullmatch(r"\$\{\w+\}", str(json_data[key])), f"jsonData.{key} must come from the environment"
    assert re.fullmatch(r"\$\{\w+\}", secure["password"]) and "password" not in json_data
    documented = {f.metadata["env"] for cls in config.SECTIONS.values() for f in config.dataclasses.fields(cls)}
    assert set(re.findall(r"\$\{(\w+)\}", text)) <= documented
    dashboards = [grafana.load(p) for p in DASHBOARD_FILES]
    for dashboard in dashboards:
        variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
        assert variable["query"] == grafana.PLUGIN and variable["current"]["value"] == source["uid"]


def test_the_dashboard_provider_points_at_the_dashboards_folder():
    (provider,) = yaml.safe_load(_yaml("dashboards", "crypto.yaml"))["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].rstrip("/").endswith("/dashboards")
    assert provider["folder"]
