"""What Grafana and the ClickHouse plugin do to a panel's SQL before ClickHouse sees it.

Three steps, in the order they happen for a query of `grafana-clickhouse-datasource` (v4):

1. the plugin's frontend replaces `$__conditionalAll(condition, $var)` by `1=1` when the variable
   has All selected, else by the condition;
2. Grafana's template service replaces dashboard variables (`$var`, `${var}`, `${var:format}`,
   `[[var]]`) and its global variables (`$__interval`, `$__interval_ms`, `$__from`, `$__to`,
   `$__range_s`); anything else that starts with `$` is left for the plugin;
3. the plugin's backend expands its macros, as its documentation lists them:

   | macro | expands to |
   | --- | --- |
   | `$__timeFilter(c)` | `c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)` |
   | `$__timeFilter_ms(c)` | `c >= fromUnixTimestamp64Milli(<from ms>) AND c <= fromUnixTimestamp64Milli(<to ms>)` |
   | `$__dateFilter(c)` | `c >= toDate('<from day>') AND c <= toDate('<to day>')` |
   | `$__dateTimeFilter(d, t)`, `$__dt(d, t)` | `(dateFilter on d) AND (timeFilter on t)` |
   | `$__fromTime`, `$__toTime` | `toDateTime(<s>)` |
   | `$__fromTime_ms`, `$__toTime_ms` | `fromUnixTimestamp64Milli(<ms>)` |
   | `$__interval_s` | the panel interval in whole seconds, at least 1 |
   | `$__timeInterval(c)` | `toStartOfInterval(toDateTime(c), INTERVAL <interval_s> second)` |
   | `$__timeInterval_ms(c)` | `toStartOfInterval(toDateTime64(c, 3), INTERVAL <interval ms> millisecond)` |

The tests run every dashboard query through `render` against the real schema in chDB, so a panel
whose SQL only works in someone's head fails there. An unknown macro, or a multi-value variable
without an explicit format (whose default rendering differs between Grafana versions), is an error.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Mapping


class MacroError(ValueError):
    """The SQL uses a macro or variable the way Grafana would not expand."""


@dataclass(frozen=True)
class TimeRange:
    from_ms: int
    to_ms: int


@dataclass(frozen=True)
class Selection:
    """A dashboard variable's current value(s); all_selected is Grafana's "All" option."""
    values: tuple
    all_selected: bool = False
    multi: bool = True


# Grafana rounds the raw interval (range / max data points) to a "nice" one.
NICE_INTERVALS_MS = (
    1, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 60_000, 120_000,
    300_000, 600_000, 900_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000,
    43_200_000, 86_400_000, 604_800_000, 2_592_000_000, 31_536_000_000,
)
DURATION_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_duration_ms(text: str) -> int:
    """'1s' -> 1000, '5m' -> 300000: Grafana's panel interval notation."""
    match = re.fullmatch(r"\s*>?\s*(\d+)\s*(ms|s|m|h|d|w)\s*", text or "")
    if not match:
        raise MacroError(f"not a Grafana interval: {text!r}")
    return int(match.group(1)) * DURATION_UNITS_MS[match.group(2)]


def panel_interval_ms(time_range: TimeRange, max_data_points: int = 1000, min_interval_ms: int = 1) -> int:
    """$__interval of a panel: the range over its data points, at least the panel's min interval,
    rounded to the nearest nice interval (in ratio), as Grafana does."""
    raw = max((time_range.to_ms - time_range.from_ms) / max(max_data_points, 1), min_interval_ms, 1)
    nice = min(NICE_INTERVALS_MS, key=lambda n: abs(math.log(raw / n)))
    return max(nice, min_interval_ms)


def format_duration(ms: int) -> str:
    """1000 -> '1s', 60000 -> '1m': how Grafana writes $__interval."""
    for unit in ("w", "d", "h", "m", "s"):
        size = DURATION_UNITS_MS[unit]
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


# ---------------------------------------------------------------- step 1: $__conditionalAll

_CONDITIONAL_ALL = "$__conditionalAll("


def apply_conditional_all(sql: str, selections: Mapping[str, Selection]) -> str:
    while _CONDITIONAL_ALL in sql:
        start = sql.index(_CONDITIONAL_ALL)
        args, end = _macro_args(sql, start + len(_CONDITIONAL_ALL) - 1)
        if len(args) != 2:
            raise MacroError(f"$__conditionalAll takes (condition, $variable): {sql[start:end]}")
        name = _variable_name(args[1])
        if name not in selections:
            raise MacroError(f"$__conditionalAll names an unknown variable {args[1]!r}")
        replacement = "1=1" if selections[name].all_selected else args[0]
        sql = sql[:start] + replacement + sql[end:]
    return sql


def _variable_name(text: str) -> str:
    match = re.fullmatch(r"\s*\$\{?(\w+)(?::\w+)?\}?\s*", text)
    if not match:
        raise MacroError(f"not a variable reference: {text!r}")
    return match.group(1)


# ---------------------------------------------------------------- step 2: template variables

_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(\w+)")


def _quoted(values, quote: str, escaped: str) -> str:
    return ",".join(f"{quote}{str(v).replace(quote, escaped)}{quote}" for v in values)


FORMATS = {
    "singlequote": lambda vs: _quoted(vs, "'", "\\'"),
    "doublequote": lambda vs: _quoted(vs, '"', '\\"'),
    "sqlstring": lambda vs: _quoted(vs, "'", "''"),
    "csv": lambda vs: ",".join(map(str, vs)),
    "pipe": lambda vs: "|".join(map(str, vs)),
    "raw": lambda vs: ",".join(map(str, vs)),
    "text": lambda vs: " + ".join(map(str, vs)),
}


def global_variables(time_range: TimeRange, interval_ms: int) -> dict[str, str]:
    return {
        "__interval": format_duration(interval_ms),
        "__interval_ms": str(interval_ms),
        "__from": str(time_range.from_ms),
        "__to": str(time_range.to_ms),
        "__range_s": str((time_range.to_ms - time_range.from_ms) // 1000),
        "__range_ms": str(time_range.to_ms - time_range.from_ms),
    }


def interpolate_variables(sql: str, selections: Mapping[str, Selection], time_range: TimeRange,
                          interval_ms: int) -> str:
    builtins = global_variables(time_range, interval_ms)

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(3) or match.group(5)
        fmt = match.group(2) or match.group(4)
        if name in builtins:
            return builtins[name]
        if name not in selections:
            return match.group(0)  # not a variable: a plugin macro, left for step 3
        selection = selections[name]
        if not selection.values:
            raise MacroError(f"variable ${name} has no value")
        if fmt is None:
            if len(selection.values) > 1 or selection.all_selected:
                raise MacroError(f"${name} is multi-value: write ${{{name}:singlequote}} (or another format) so "
                                 f"every Grafana version renders it the same")
            return str(selection.values[0])
        if fmt not in FORMATS:
            raise MacroError(f"${{{name}:{fmt}}}: unknown format")
        return FORMATS[fmt](selection.values)

    return _VARIABLE.sub(replace, sql)


# ---------------------------------------------------------------- step 3: the plugin's macros

_MACRO = re.compile(r"\$__(\w+)")


def _seconds(ms: int) -> str:
    return f"toDateTime({ms // 1000})"


def _milliseconds(ms: int) -> str:
    return f"fromUnixTimestamp64Milli({ms})"


def _day(ms: int) -> str:
    return f"toDate('{dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc):%Y-%m-%d}')"


def _between(column: str, low: str, high: str) -> str:
    return f"{column} >= {low} AND {column} <= {high}"


def _expand_one(name: str, args: list[str] | None, r: TimeRange, interval_ms: int) -> str:
    interval_s = max(interval_ms // 1000, 1)
    without_args = {
        "fromTime": _seconds(r.from_ms), "toTime": _seconds(r.to_ms),
        "fromTime_ms": _milliseconds(r.from_ms), "toTime_ms": _milliseconds(r.to_ms),
        "interval_s": str(interval_s),
    }
    if name in without_args:
        return without_args[name]
    one_column = {
        "timeFilter": lambda c: _between(c, _seconds(r.from_ms), _seconds(r.to_ms)),
        "timeFilter_ms": lambda c: _between(c, _milliseconds(r.from_ms), _milliseconds(r.to_ms)),
        "dateFilter": lambda c: _between(c, _day(r.from_ms), _day(r.to_ms)),
        "timeInterval": lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {interval_s} second)",
        "timeInterval_ms": lambda c: (f"toStartOfInterval(toDateTime64({c}, 3), "
                                      f"INTERVAL {max(interval_ms, 1)} millisecond)"),
    }
    if name in one_column:
        if not args or len(args) != 1:
            raise MacroError(f"$__{name} takes one column, got {args}")
        return one_column[name](args[0])
    if name in ("dateTimeFilter", "dt"):
        if not args or len(args) != 2:
            raise MacroError(f"$__{name} takes (date column, time column), got {args}")
        return f"({_expand_one('dateFilter', args[:1], r, interval_ms)}) AND " \
               f"({_expand_one('timeFilter', args[1:], r, interval_ms)})"
    raise MacroError(f"$__{name} is not a macro of the ClickHouse plugin")


def expand_macros(sql: str, time_range: TimeRange, interval_ms: int) -> str:
    out, position = [], 0
    for match in _MACRO.finditer(sql):
        if match.start() < position:
            continue
        out.append(sql[position:match.start()])
        args, end = None, match.end()
        if end < len(sql) and sql[end] == "(":
            args, end = _macro_args(sql, end)
        out.append(_expand_one(match.group(1), args, time_range, interval_ms))
        position = end
    out.append(sql[position:])
    return "".join(out)


def _macro_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose '(' is at open_paren, nested parentheses and
    quotes respected; and the index just past its ')'."""
    depth, quote, args, current = 0, None, [], []
    for i in range(open_paren, len(sql)):
        ch = sql[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(current).strip())
                return [a for a in args if a != ""], i + 1
        elif ch == "," and depth == 1:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    raise MacroError(f"unclosed macro call at: {sql[open_paren - 20:open_paren + 40]!r}")


def render(sql: str, time_range: TimeRange, interval_ms: int, selections: Mapping[str, Selection]) -> str:
    """The SQL ClickHouse receives for a panel query: all three steps, in Grafana's order."""
    sql = apply_conditional_all(sql, selections)
    sql = interpolate_variables(sql, selections, time_range, interval_ms)
    sql = expand_macros(sql, time_range, interval_ms)
    leftover = re.search(r"\$\{?\w+|\[\[\w+", sql)
    if leftover:
        raise MacroError(f"unexpanded reference {leftover.group(0)!r} in: {sql[:200]}")
    return sql
