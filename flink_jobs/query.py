"""Runs one of the ad-hoc queries of sql/queries/ against the store, as a table or into Parquet.

    python -m flink_jobs.query --list
    python -m flink_jobs.query top_anomalies_of_day --param day=2023-03-10 --param limit=10
    python -m flink_jobs.query anomalies_export --param from='2023-03-10 00:00:00' \\
        --param to='2023-03-11 00:00:00' --parquet anomalies.parquet

The embedded store's counterpart of clickhouse-client with --param_NAME (docs/queries.md): the
values travel as ClickHouse query parameters, typed by the {name:Type} placeholders of the file.
Reads the store the configuration names (CHDB_PATH or CLICKHOUSE_URL); a chDB directory has one
owner at a time, so run it when the job is not writing there.
"""
from __future__ import annotations

import argparse
import os
import sys

import config as app_config
from config import ConfigError
from flink_jobs.store import SQL_DIR, StoreError, named_query, open_store


def query_names() -> list[str]:
    folder = os.path.join(SQL_DIR, "queries")
    return sorted(name[:-4] for name in os.listdir(folder) if name.endswith(".sql"))


def parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise ConfigError(f"--param {pair!r}: expected NAME=VALUE")
        params[name] = value
    return params


def export_parquet(store, name: str, params: dict, path: str) -> int:
    """Writes the query's result to a Parquet file; returns its rows."""
    import pyarrow.parquet as pq

    table = store.query_arrow(named_query(name), params)
    pq.write_table(table, path)
    return table.num_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flink_jobs.query", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="a file of sql/queries/, without .sql")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--parquet", metavar="FILE", help="write the result to a Parquet file")
    parser.add_argument("--list", action="store_true", help="list the queries")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.list or not args.name:
        print("\n".join(query_names()))
        return 0
    if args.name not in query_names():
        print(f"error: no query {args.name!r}; --list shows them", file=sys.stderr)
        return 2
    try:
        params = parse_params(args.param)
        with open_store(app_config.load().store) as store:
            if args.parquet:
                rows = export_parquet(store, args.name, params, args.parquet)
                print(f"{rows} rows written to {args.parquet}")
            else:
                table = store.query_arrow(named_query(args.name), params)
                print(table.to_pandas().to_string(index=False, max_colwidth=120))
    except (ConfigError, StoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # chDB reports a bad query or a missing parameter this way
        print(f"error: {str(error).splitlines()[0][:500]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
