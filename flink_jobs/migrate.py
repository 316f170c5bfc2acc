"""Schema migrations: sql/NNN_*.sql applied in order, each once, recorded with a checksum.

    python -m flink_jobs.migrate              apply what is pending, then the TTL settings
    python -m flink_jobs.migrate --status     applied / pending / changed per file; changes nothing
    python -m flink_jobs.migrate --dry-run    print the statements it would run; changes nothing
    python -m flink_jobs.migrate --users      also (re)create the least-privilege server users of
                                              sql/users/ (needs CLICKHOUSE_JOB_PASSWORD and
                                              CLICKHOUSE_GRAFANA_PASSWORD; ClickHouse server only)

Works on the store the configuration names (CHDB_PATH, or CLICKHOUSE_URL as an administrator),
through the same Store the job writes with. Applied files are recorded in `schema_migrations`
with the SHA-256 of their statements (comments and whitespace do not count); a recorded file
whose statements changed is refused: schema changes go into a new numbered file. The TTL of raw
trades and 1-second bars follows TRADES_TTL_DAYS and BARS_1S_TTL_DAYS on every run of this
command, changed only when it differs from what the table has. The job applies the same files
when it starts (STORE_MIGRATE_ON_START), so a store is never older than the job writing to it,
but leaves TTLs alone: a job started without the TTL settings must not undo them.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import os
import re
import sys
from dataclasses import dataclass

import config as app_config
from config import ConfigError, StoreConfig
from flink_jobs.store import (SQL_DIR, Store, StoreError, checked_identifier, open_store, schema_files,
                              split_statements)

log = logging.getLogger("flink_jobs.migrate")

MIGRATIONS_DDL = os.path.join(SQL_DIR, "meta", "schema_migrations.sql")
USERS_DIR = os.path.join(SQL_DIR, "users")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class MigrationError(StoreError):
    pass


@dataclass(frozen=True)
class Migration:
    version: str             # the file name, e.g. 005_bars.sql
    statements: tuple[str, ...]

    @property
    def checksum(self) -> str:
        normalized = "\n;\n".join(" ".join(s.split()) for s in self.statements)
        return hashlib.sha256(normalized.encode()).hexdigest()


@dataclass
class Plan:
    applied: list[tuple[Migration, dict]]      # (file, its record)
    pending: list[Migration]
    changed: list[tuple[Migration, dict]]      # applied, then edited
    missing: list[dict]                        # records of files no longer in sql/


def read_file_statements(path: str) -> tuple[str, ...]:
    with open(path, encoding="utf-8") as handle:
        return tuple(split_statements(handle.read()))


def migrations() -> list[Migration]:
    return [Migration(os.path.basename(p), read_file_statements(p)) for p in schema_files()]


def _migrations_table_exists(store: Store) -> bool:
    return bool(store.scalar("SELECT count() FROM system.tables WHERE database = {db:String} "
                             "AND name = 'schema_migrations'", {"db": store.database}))


def plan(store: Store) -> Plan:
    recorded = {}
    if _migrations_table_exists(store):
        recorded = {r["version"]: r for r in store.query(
            "SELECT version, checksum, applied_at FROM schema_migrations FINAL ORDER BY version")}
    result = Plan([], [], [], [])
    files = migrations()
    for migration in files:
        record = recorded.get(migration.version)
        if record is None:
            result.pending.append(migration)
        elif record["checksum"] != migration.checksum:
            result.changed.append((migration, record))
        else:
            result.applied.append((migration, record))
    names = {m.version for m in files}
    result.missing = [r for v, r in recorded.items() if v not in names]
    return result


def refuse_changed(p: Plan) -> None:
    if p.changed:
        details = "; ".join(f"sql/{m.version} (applied {r['applied_at']}, checksum {r['checksum'][:12]}, now "
                            f"{m.checksum[:12]})" for m, r in p.changed)
        raise MigrationError(f"already-applied migration files changed: {details}. Restore them and put the "
                             f"change into a new numbered file in sql/")


# TTLs, as ClickHouse prints them back in system.tables.engine_full (compared to apply only a
# change: MODIFY TTL rewrites every part that holds expired rows). Values are validated integers.
def desired_ttls(cfg: StoreConfig) -> dict[str, str]:
    ttls = {"trades": "", "bars": ""}
    if cfg.trades_ttl_days:
        ttls["trades"] = f"toDateTime(trade_time) + toIntervalDay({int(cfg.trades_ttl_days)})"
    if cfg.bars_1s_ttl_days:
        ttls["bars"] = f"toDateTime(window_start) + toIntervalDay({int(cfg.bars_1s_ttl_days)}) WHERE interval_s = 1"
    return ttls


def current_ttl(store: Store, table: str) -> str:
    engine = store.scalar("SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                          {"db": store.database, "t": table}) or ""
    found = re.search(r"\bTTL (.*?)(?: SETTINGS |$)", engine)
    return found.group(1).strip() if found else ""


def ttl_statements(store: Store, cfg: StoreConfig) -> list[str]:
    """The ALTERs that bring each table's TTL to the setting; none when it is there already (a
    table not created yet has none)."""
    statements = []
    for table, wanted in desired_ttls(cfg).items():
        if wanted == current_ttl(store, table):
            continue
        statements.append(f"ALTER TABLE `{table}` MODIFY TTL {wanted}" if wanted else f"ALTER TABLE `{table}` REMOVE TTL")
    return statements


def migrate(store: Store, cfg: StoreConfig, dry_run: bool = False, ttl: bool = True) -> list[str]:
    """Applies pending files and (ttl) the TTL settings; returns the statements run (or, dry, to run)."""
    if not dry_run:
        store.command(f"CREATE DATABASE IF NOT EXISTS `{store.database}`")
        for statement in read_file_statements(MIGRATIONS_DDL):
            store.command(statement)
    p = plan(store)
    refuse_changed(p)
    for record in p.missing:
        log.warning("schema_migrations records %s, which is no longer in sql/", record["version"])
    ran: list[str] = []
    for migration in p.pending:
        for statement in migration.statements:
            if not dry_run:
                store.command(statement)
            ran.append(statement)
        if not dry_run:
            store.insert("schema_migrations", [(migration.version, migration.checksum, len(migration.statements))])
        log.info("%s %s (%d statements)", "would apply" if dry_run else "applied", migration.version,
                 len(migration.statements))
    for statement in ttl_statements(store, cfg) if ttl else []:
        if not dry_run:
            store.command(statement)
        log.info("%s: %s", "would run" if dry_run else "ran", statement)
        ran.append(statement)
    return ran


def render_users(database: str, job_password: str, grafana_password: str) -> list[str]:
    """The statements of sql/users/ with their placeholders filled: passwords only as SHA-256."""
    if not job_password or not grafana_password:
        raise MigrationError("--users needs CLICKHOUSE_JOB_PASSWORD and CLICKHOUSE_GRAFANA_PASSWORD")
    # Filled by text substitution (DDL takes no query parameters): an identifier checked like the
    # store checks it, and hex digests.
    values = {"database": f"`{checked_identifier(database)}`",
              "job_password_sha256": hashlib.sha256(job_password.encode()).hexdigest(),
              "grafana_password_sha256": hashlib.sha256(grafana_password.encode()).hexdigest()}

    def fill(match: re.Match) -> str:
        if match.group(1) not in values:
            raise MigrationError(f"sql/users: unknown placeholder {{{{{match.group(1)}}}}}")
        return values[match.group(1)]

    statements = []
    for name in sorted(n for n in os.listdir(USERS_DIR) if n.endswith(".sql")):
        statements += [_PLACEHOLDER.sub(fill, s) for s in read_file_statements(os.path.join(USERS_DIR, name))]
    return statements


def apply_users(store: Store, statements: list[str], secrets: list[str]) -> None:
    """Runs the rendered statements; an error names the statement's start, never a hash."""
    for number, statement in enumerate(statements, 1):
        try:
            store.command(statement)
        except Exception as error:  # the backend's own error type; re-raised without secrets
            message = str(error)
            for secret in secrets:
                message = message.replace(secret, "***")
            raise MigrationError(f"sql/users statement {number} ({' '.join(statement.split()[:3])} ...) failed: "
                                 f"{message[:300]}") from None


def status_lines(p: Plan) -> list[str]:
    lines = [f"applied  {m.version}  {r['applied_at']}  {m.checksum[:12]}" for m, r in p.applied]
    lines += [f"CHANGED  {m.version}  applied {r['applied_at']} as {r['checksum'][:12]}, file is now "
              f"{m.checksum[:12]}" for m, r in p.changed]
    lines += [f"pending  {m.version}" for m in p.pending]
    lines += [f"missing  {r['version']}  recorded, no longer in sql/" for r in p.missing]
    return sorted(lines, key=lambda line: line.split()[1])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m flink_jobs.migrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--status", action="store_true", help="show applied, pending and changed files")
    mode.add_argument("--dry-run", action="store_true", help="print what would run")
    parser.add_argument("--users", action="store_true", help="also apply sql/users/ (ClickHouse server)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = app_config.load().store
        users = render_users(cfg.database, cfg.job_password, cfg.grafana_password) if args.users else []
        # Run by an administrator: it may create the database even when the job may not.
        with open_store(dataclasses.replace(cfg, migrate_on_start=not (args.status or args.dry_run))) as store:
            if args.status:
                print("\n".join(status_lines(plan(store))) or "no migration files")
                return 0
            statements = migrate(store, cfg, dry_run=args.dry_run)
            if args.dry_run:
                print(";\n\n".join(statements) or "-- nothing to do")
                if users:
                    print(f"-- and the {len(users)} statements of sql/users/ (not shown: they carry password hashes)")
                return 0
            if users:
                secrets = [cfg.job_password, cfg.grafana_password]
                apply_users(store, users, secrets + [hashlib.sha256(s.encode()).hexdigest() for s in secrets])
                log.info("applied %d statements of sql/users/", len(users))
    except (ConfigError, StoreError) as error:
        log.error("%s", error)
        return 2
    log.info("store %s is up to date (%d statements run)", cfg.database, len(statements))
    return 0


if __name__ == "__main__":
    sys.exit(main())
