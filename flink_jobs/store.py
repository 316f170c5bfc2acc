"""The store: one interface over ClickHouse, two backends sharing the SQL files of sql/.

- ChdbStore: the embedded default, chDB (the ClickHouse engine in-process) at a directory.
  Only one process may open a directory at a time, so the job writes through a single sink
  subtask and readers run after it (or against a server).
- ServerStore: a ClickHouse server through clickhouse-connect, when CLICKHOUSE_URL is set.

Rows travel as Arrow tables built from the column lists below, so values never pass through SQL
text: inserts send them as an Arrow stream (chDB's streaming insert) or through the native insert
protocol (server), and queries take server-side {name:Type} parameters.
"""
from __future__ import annotations

import atexit
import glob
import logging
import os
import re
import threading
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

from config import PROJECT_DIR, StoreConfig, redact_url

log = logging.getLogger(__name__)

SQL_DIR = os.path.join(PROJECT_DIR, "sql")
_MS = pa.timestamp("ms", tz="UTC")

# Column order of the tuples the job produces for each table (must match sql/; a test checks).
TABLE_COLUMNS: dict[str, tuple[tuple[str, pa.DataType], ...]] = {
    "trades": (
        ("symbol", pa.string()), ("trade_id", pa.uint64()), ("trade_time", _MS), ("event_time", _MS),
        ("price", pa.float64()), ("qty", pa.float64()), ("quote_qty", pa.float64()),
        ("is_buyer_maker", pa.bool_()), ("log_return", pa.float64()), ("price_mean", pa.float64()),
        ("price_std", pa.float64()), ("z_price", pa.float32()), ("return_mean", pa.float64()),
        ("return_std", pa.float64()), ("z_return", pa.float32()), ("if_score", pa.float32()),
        ("model_version", pa.string()),
    ),
    "anomalies": (
        ("symbol", pa.string()), ("trade_id", pa.uint64()), ("trade_time", _MS), ("method", pa.string()),
        ("price", pa.float64()), ("score", pa.float64()), ("threshold", pa.float64()),
        ("severity", pa.string()), ("reason", pa.string()), ("z_price", pa.float64()),
        ("z_return", pa.float64()), ("log_return", pa.float64()), ("if_score", pa.float64()),
        ("model_version", pa.string()), ("robust_z_return", pa.float64()), ("price_change_pct", pa.float64()),
        ("time_gap_sec", pa.float64()), ("vwap_deviation_pct", pa.float64()), ("volume_spike_ratio", pa.float64()),
        ("price_velocity_pct_s", pa.float64()), ("trade_rate_burst", pa.float64()),
        ("buy_sell_imbalance", pa.float64()), ("volume_z", pa.float64()), ("rate_z", pa.float64()),
        ("zscore", pa.float64()),
    ),
    "dead_letters": (
        ("stage", pa.string()), ("reason", pa.string()), ("raw", pa.string()), ("symbol", pa.string()),
        ("trade_id", pa.int64()), ("received_at", _MS),
    ),
    "bars": (
        ("symbol", pa.string()), ("interval_s", pa.uint32()), ("window_start", _MS), ("open", pa.float64()),
        ("high", pa.float64()), ("low", pa.float64()), ("close", pa.float64()), ("volume", pa.float64()),
        ("quote_volume", pa.float64()), ("vwap", pa.float64()), ("trade_count", pa.uint32()),
        ("buy_volume", pa.float64()), ("sell_volume", pa.float64()),
    ),
    "schema_migrations": (("version", pa.string()), ("checksum", pa.string()), ("statements", pa.uint32())),
}

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


class StoreError(RuntimeError):
    pass


def schema_files() -> list[str]:
    """sql/NNN_*.sql in the order they apply."""
    return sorted(glob.glob(os.path.join(SQL_DIR, "[0-9][0-9][0-9]_*.sql")))


def split_statements(text: str) -> list[str]:
    """The statements of one SQL file: comment lines dropped, split on ';'."""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def schema_statements() -> list[tuple[str, str]]:
    """(file name, statement) for every statement of sql/, comments stripped, in order."""
    statements = []
    for path in schema_files():
        with open(path, encoding="utf-8") as handle:
            statements += [(os.path.basename(path), s) for s in split_statements(handle.read())]
    return statements


def named_query(name: str) -> str:
    """The text of sql/queries/<name>.sql, the ad-hoc queries shared by the CLI, docs and tests."""
    path = os.path.join(SQL_DIR, "queries", f"{name}.sql")
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def to_arrow(table: str, rows: Sequence[tuple]) -> pa.Table:
    """Rows (tuples in TABLE_COLUMNS order) -> a typed Arrow table."""
    # transposed in C: 0.63 against 0.87 µs a trades row
    return table_of(table, zip(*rows) if rows else [[]] * len(TABLE_COLUMNS[table]))


def table_of(table: str, values: Iterable) -> pa.Table:
    """Columns (sequences, numpy arrays or Arrow arrays, in TABLE_COLUMNS order) -> a typed Arrow table."""
    columns = TABLE_COLUMNS[table]
    arrays = [column.cast(kind) if isinstance(column, pa.Array) else pa.array(column, type=kind)
              for column, (_, kind) in zip(values, columns)]
    return pa.Table.from_arrays(arrays, names=[name for name, _ in columns])


def arrow_stream(data: pa.Table) -> bytes:
    """An Arrow table as the bytes of one IPC stream (schema, record batches, end marker)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return sink.getvalue().to_pybytes()


def from_arrow_stream(payload: bytes) -> pa.Table:
    """The table of arrow_stream's bytes (zero-copy: the columns point into `payload`)."""
    return pa.ipc.open_stream(payload).read_all()


# A store record's rows (operators.batch) are either a list of tuples in TABLE_COLUMNS order or,
# for a scoring batch's trades, an Arrow IPC stream built column by column (operators.trades_payload):
# the sink then inserts them without a conversion per row (docs/performance.md, "Thirteenth round").
def payload_rows(payload: Sequence[tuple] | bytes) -> int:
    """How many rows a store record carries."""
    return from_arrow_stream(payload).num_rows if isinstance(payload, bytes) else len(payload)


def payloads_table(table: str, payloads: Iterable[Sequence[tuple] | bytes]) -> pa.Table:
    """Several store records' rows for one table, as one Arrow table."""
    rows, tables = [], []
    for payload in payloads:
        if isinstance(payload, bytes):
            tables.append(from_arrow_stream(payload))
        else:
            rows.extend(payload)
    if rows or not tables:
        tables.append(to_arrow(table, rows))
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def checked_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise StoreError(f"CLICKHOUSE_DATABASE={name!r}: must be a plain identifier")
    return name


class Store:
    """Schema, batched inserts and parameterised queries; subclasses talk to one backend."""

    def __init__(self, config: StoreConfig):
        self.config = config
        self.database = checked_identifier(config.database)

    def apply_schema(self) -> int:
        """Creates the database and applies the pending files of sql/ in order, recorded in
        schema_migrations (flink_jobs/migrate.py); TTLs are the migrations command's. Safe to
        repeat, and to run from several sink subtasks at once (every statement is idempotent).
        Returns the statements run."""
        from flink_jobs.migrate import migrate

        if not schema_files():
            raise StoreError(f"no schema files in {SQL_DIR}: the job must ship sql/ with its Python files")
        return len(migrate(self, self.config, ttl=False))

    def command(self, sql: str) -> None:
        """Runs a statement without parameters or results (DDL)."""
        self._command(sql)

    def insert(self, table: str, rows: Sequence[tuple]) -> None:
        if rows:
            self._insert_arrow(table, to_arrow(table, rows))

    def insert_payloads(self, table: str, payloads: Iterable[Sequence[tuple] | bytes]) -> int:
        """Inserts the rows of several store records (payload_rows) at once; returns how many."""
        data = payloads_table(table, payloads)
        if data.num_rows:
            self._insert_arrow(table, data)
        return data.num_rows

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict]:
        """Runs a SELECT with {name:Type} parameters; returns rows as dicts."""
        return self.query_arrow(sql, params).to_pylist()

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Runs a SELECT with {name:Type} parameters; returns an Arrow table (exports, Parquet)."""
        raise NotImplementedError

    def run_named(self, name: str, params: Mapping[str, Any] | None = None) -> list[dict]:
        return self.query(named_query(name), params)

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None):
        rows = self.query(sql, params)
        return next(iter(rows[0].values())) if rows else None

    def close(self) -> None:
        pass

    def _command(self, sql: str) -> None:
        raise NotImplementedError

    def _insert_arrow(self, table: str, data: pa.Table) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _locked_by_another_process(chdb_path: str) -> bool:
    """ClickHouse holds an exclusive flock on <path>/status while a server owns the directory;
    chDB's own error only says the embedded server failed to start."""
    import fcntl

    try:
        with open(os.path.join(chdb_path, "status"), "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    except FileNotFoundError:
        pass
    return False


class ChdbStore(Store):
    def __init__(self, config: StoreConfig):
        super().__init__(config)
        import chdb  # imported here: a server deployment does not need the embedded engine

        os.makedirs(config.chdb_path, exist_ok=True)
        try:
            self._conn = chdb.connect(f"file:{config.chdb_path}")
        except RuntimeError as error:
            if _locked_by_another_process(config.chdb_path):
                raise StoreError(
                    f"CHDB_PATH={config.chdb_path} is open in another process: an embedded store has "
                    f"one owner at a time. Wait for that process (a running job?) to finish, or point "
                    f"CHDB_PATH elsewhere.") from error
            raise
        self._command(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
        self._conn.query(f"USE `{self.database}`")

    def query_arrow(self, sql, params=None):
        return self._conn.query(sql, "ArrowTable", params=dict(params or {}))

    def close(self):
        if getattr(self, "_conn", None) is not None:
            self._conn.close()
            self._conn = None

    def _command(self, sql):
        self._conn.query(sql, "CSV")

    def _insert_arrow(self, table, data):
        # The table goes in as an Arrow IPC stream through chDB's streaming insert: about 10 ms an
        # insert whatever its size, against about 20 ms for INSERT ... SELECT FROM Python(data), and
        # the sink pays that once per table and flush (docs/performance.md, "Thirteenth round").
        names = ", ".join(data.column_names)
        inserter = self._conn.send_insert(f"INSERT INTO `{table}` ({names})", "ArrowStream")
        try:
            inserter.append(arrow_stream(data))
        except BaseException:
            inserter.cancel()
            raise
        inserter.finish()


class ServerStore(Store):
    def __init__(self, config: StoreConfig):
        super().__init__(config)
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import ClickHouseError

        try:
            self._client = clickhouse_connect.get_client(**client_settings(config))
        except ClickHouseError as error:
            raise StoreError(f"cannot reach ClickHouse at CLICKHOUSE_URL={redacted(config.clickhouse_url)}: "
                             f"{str(error).split(' (Caused')[0][:200]}") from None
        if config.migrate_on_start:
            # An insert-only job user may not create databases, even existing ones: skip it then.
            self._command(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
        self._client.database = self.database

    def query(self, sql, params=None):
        return list(self._client.query(sql, parameters=dict(params or {})).named_results())

    def query_arrow(self, sql, params=None):
        return self._client.query_arrow(sql, parameters=dict(params or {}))

    def close(self):
        self._client.close()

    def _command(self, sql):
        self._client.command(sql)

    def _insert_arrow(self, table, data):
        self._client.insert_arrow(table, data, database=self.database)


def client_settings(config: StoreConfig) -> dict:
    """Keyword arguments of clickhouse_connect.get_client. The interface is given, not left to the
    DSN: clickhouse-connect reads only host, port, user, password and database from a DSN and picks
    TLS by port (443, 8443), so https://host:9443 or https://host would have gone out in plain HTTP."""
    settings = {"dsn": config.clickhouse_url, "username": config.user, "password": config.password,
                "interface": "https" if config.secure else "http", "secure": config.secure}
    if config.secure:
        settings["verify"] = config.verify
        if config.ca_cert:
            settings["ca_cert"] = config.ca_cert
    return settings


# A URL without the password it may carry (user:password@host), for logs and errors.
redacted = redact_url


def open_store(config: StoreConfig) -> Store:
    """The backend the configuration names: a server when CLICKHOUSE_URL is set, else chDB."""
    if config.backend == "clickhouse":
        log.info("store: ClickHouse server %s, database %s", redacted(config.clickhouse_url), config.database)
        return ServerStore(config)
    log.info("store: embedded chDB at %s, database %s", config.chdb_path, config.database)
    return ChdbStore(config)


class SharedStore:
    """One process's store, shared by the job's operators that write to it: chDB allows one
    connection per directory and process, and at parallelism 1 the scoring operator and the store
    sink run in the same Python worker (flink_jobs/operators.py). Bundles of different operators
    may run on different threads of the worker, so every call holds a lock."""

    _lock = threading.Lock()
    _open: dict = {}        # store identity -> [SharedStore, users]

    def __init__(self, store: Store, identity: tuple):
        self.store = store
        self.identity = identity
        self.calls = threading.Lock()

    @classmethod
    def acquire(cls, config: StoreConfig) -> "SharedStore":
        """The process's store for `config`, opened (and migrated, if the configuration says so) by
        its first user."""
        identity = (config.backend, config.clickhouse_url or os.path.abspath(config.chdb_path), config.database)
        with cls._lock:
            entry = cls._open.get(identity)
            if entry is None:
                store = open_store(config)
                if config.migrate_on_start:
                    store.apply_schema()
                entry = cls._open[identity] = [cls(store, identity), 0]
            entry[1] += 1
            return entry[0]

    @classmethod
    def close_all(cls) -> None:
        """Closes what is still open. Registered with atexit: a chDB connection left to the
        interpreter's final teardown (held by a class attribute, in a heap the operators' open()
        has frozen, flink_jobs/worker_gc.py) crashed the process on exit in about half the runs."""
        with cls._lock:
            entries, cls._open = list(cls._open.values()), {}
        for shared, _ in entries:
            shared.store.close()

    def release(self) -> None:
        """The user's part done; the last one closes the store."""
        with self._lock:
            entry = self._open.get(self.identity)
            if entry is None or entry[0] is not self:
                return   # closed at exit already (close_all)
            entry[1] -= 1
            if entry[1] == 0:
                del self._open[self.identity]
                self.store.close()

    def insert_payloads(self, table: str, payloads) -> int:
        with self.calls:
            return self.store.insert_payloads(table, payloads)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        with self.calls:
            return self.store.query_arrow(sql, params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict]:
        return self.query_arrow(sql, params).to_pylist()


atexit.register(SharedStore.close_all)
