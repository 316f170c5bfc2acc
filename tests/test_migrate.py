"""Migrations, TTL and least-privilege users against the real embedded ClickHouse engine (chDB)."""
import hashlib
import os
import shutil
from datetime import datetime, timedelta, timezone

import pytest

import flink_jobs.store as store_module
from config import load
from flink_jobs import migrate
from flink_jobs.migrate import MigrationError, plan, render_users, status_lines
from flink_jobs.store import open_store, schema_files

from tests.conftest import PROJECT_DIR

DAY_MS = 86_400_000


@pytest.fixture
def sql_copy(tmp_path, monkeypatch):
    """A copy of sql/ the test may edit, used by the store and the migrator."""
    copy = tmp_path / "sql"
    shutil.copytree(os.path.join(PROJECT_DIR, "sql"), copy)
    monkeypatch.setattr(store_module, "SQL_DIR", str(copy))
    return copy


def open_chdb(tmp_path, **env):
    return open_store(load({"CHDB_PATH": str(tmp_path / "chdb"), **env}).store)


def test_a_fresh_store_gets_every_file_in_order_once_and_a_second_run_does_nothing(tmp_path):
    with open_chdb(tmp_path) as store:
        ran = migrate.migrate(store, store.config)
        recorded = store.query("SELECT version, checksum, statements FROM schema_migrations FINAL ORDER BY version")
        assert [r["version"] for r in recorded] == [os.path.basename(p) for p in schema_files()]
        assert {r["version"]: r["statements"] for r in recorded}["005_bars.sql"] == 1
        assert len(ran) == sum(r["statements"] for r in recorded)
        assert migrate.migrate(store, store.config) == []
        assert all(line.startswith("applied") for line in status_lines(plan(store)))
        assert store.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'bars'")


def test_a_store_made_before_migrations_existed_is_adopted_without_error(tmp_path):
    with open_chdb(tmp_path) as store:
        for _, statement in store_module.schema_statements()[:-1]:  # everything but the newest file's last one
            store.command(statement)
        store.insert("trades", [("ETHUSDT", 1, 1675329600138, 1675329600138, 1666.8, 1.0, 1666.8, False,
                                 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "")])
        migrate.migrate(store, store.config)
        assert not plan(store).pending
        assert store.scalar("SELECT count() FROM trades") == 1


def test_a_changed_applied_file_is_refused_a_comment_edit_is_not_and_a_new_file_applies(tmp_path, sql_copy):
    with open_chdb(tmp_path) as store:
        migrate.migrate(store, store.config)
        anomalies = sql_copy / "002_anomalies.sql"
        original = anomalies.read_text()

        anomalies.write_text("-- a clarified comment\n" + original.replace("(\n", "(\n   ", 1))
        assert migrate.migrate(store, store.config) == []

        anomalies.write_text(original.replace("    reason      String", "    reason      String,\n    extra String"))
        with pytest.raises(MigrationError, match=r"002_anomalies.sql .*new numbered file"):
            migrate.migrate(store, store.config)
        assert any(line.startswith("CHANGED  002_anomalies.sql") for line in status_lines(plan(store)))

        anomalies.write_text(original)
        (sql_copy / "006_note.sql").write_text("ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS note String")
        assert [m.version for m in plan(store).pending] == ["006_note.sql"]
        assert migrate.migrate(store, store.config) == ["ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS note String"]
        assert "note" in {r["name"] for r in store.query("DESCRIBE TABLE anomalies")}


def test_dry_run_lists_the_statements_and_creates_nothing(tmp_path):
    with open_chdb(tmp_path, TRADES_TTL_DAYS="30") as store:
        statements = migrate.migrate(store, store.config, dry_run=True)
        assert statements[0].startswith("CREATE TABLE IF NOT EXISTS trades")
        assert statements[-1] == "ALTER TABLE `trades` MODIFY TTL toDateTime(trade_time) + toIntervalDay(30)"
        assert store.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase()") == 0


def _trade(time_ms, trade_id):
    return ("ETHUSDT", trade_id, time_ms, time_ms, 1666.8, 1.0, 1666.8, False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            0.0, "")


def _bar(interval_s, start_ms):
    return ("ETHUSDT", interval_s, start_ms, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1, 1.0, 0.0)


def test_ttl_settings_expire_old_trades_and_1s_bars_keep_minute_bars_and_are_set_only_when_changed(tmp_path):
    now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    old_ms = now_ms - 40 * DAY_MS
    with open_chdb(tmp_path, TRADES_TTL_DAYS="30", BARS_1S_TTL_DAYS="7") as store:
        ran = migrate.migrate(store, store.config)
        assert "ALTER TABLE `bars` MODIFY TTL toDateTime(window_start) + toIntervalDay(7) WHERE interval_s = 1" in ran
        assert migrate.migrate(store, store.config) == []  # the same TTLs: nothing to rewrite

        store.insert("trades", [_trade(old_ms, 1), _trade(now_ms, 2)])
        store.insert("bars", [_bar(1, old_ms - old_ms % 1000), _bar(60, old_ms - old_ms % 60_000), _bar(1, now_ms)])
        store.command("OPTIMIZE TABLE trades FINAL")
        store.command("OPTIMIZE TABLE bars FINAL")
        assert [r["trade_id"] for r in store.query("SELECT trade_id FROM trades")] == [2]
        kept = store.query("SELECT interval_s, window_start FROM bars ORDER BY window_start")
        assert [r["interval_s"] for r in kept] == [60, 1]
        assert kept[1]["window_start"] > datetime.now(timezone.utc) - timedelta(days=1)

    with open_chdb(tmp_path) as store:  # the job's start, without the TTL settings, leaves them alone
        assert store.apply_schema() == 0
        assert migrate.current_ttl(store, "trades") == "toDateTime(trade_time) + toIntervalDay(30)"

    with open_chdb(tmp_path, TRADES_TTL_DAYS="0") as store:  # 0 = keep for ever
        assert migrate.migrate(store, store.config) == ["ALTER TABLE `trades` REMOVE TTL", "ALTER TABLE `bars` REMOVE TTL"]
        assert migrate.current_ttl(store, "trades") == ""


def test_user_statements_carry_only_password_hashes_fill_every_placeholder_and_parse(tmp_path):
    statements = render_users("crypto", "job-Secret-1", "graf-Secret-2")
    text = "\n".join(statements)
    assert "job-Secret-1" not in text and "graf-Secret-2" not in text and "{{" not in text
    assert f"BY '{hashlib.sha256(b'job-Secret-1').hexdigest()}'" in text
    assert f"BY '{hashlib.sha256(b'graf-Secret-2').hexdigest()}'" in text
    assert "GRANT INSERT ON `crypto`.bars TO crypto_writer" in text
    assert "GRANT SELECT ON `crypto`.* TO crypto_reader" in text
    assert not any(s.startswith(("GRANT INSERT", "GRANT ALTER", "GRANT CREATE")) and "reader" in s for s in statements)
    with open_chdb(tmp_path) as store:
        for statement in statements:  # ClickHouse's own parser; a syntax error raises
            # Parameter values are in escaped form: a raw newline would end the value.
            escaped = statement.replace("\\", "\\\\").replace("\n", "\\n")
            formatted = store.scalar("SELECT formatQuery({q:String})", {"q": escaped})
            assert formatted.split()[0] == statement.split()[0]


def test_users_need_both_passwords_and_chdb_refuses_access_management_without_leaking_them(tmp_path):
    with pytest.raises(MigrationError, match="CLICKHOUSE_GRAFANA_PASSWORD"):
        render_users("crypto", "job-Secret-1", "")
    statements = render_users("crypto", "job-Secret-1", "graf-Secret-2")
    secrets = ["job-Secret-1", hashlib.sha256(b"job-Secret-1").hexdigest()]
    with open_chdb(tmp_path) as store:
        with pytest.raises(MigrationError, match="ACCESS_DENIED|Not enough privileges") as caught:
            migrate.apply_users(store, [s for s in statements if "crypto_job IDENTIFIED" in s], secrets)
    assert not any(secret in str(caught.value) for secret in secrets)


def test_command_line_status_and_apply_against_chdb(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHDB_PATH", str(tmp_path / "chdb"))
    assert migrate.main(["--status"]) == 0
    assert "pending  001_trades.sql" in capsys.readouterr().out
    assert migrate.main([]) == 0
    assert migrate.main(["--status"]) == 0
    assert "applied  005_bars.sql" in capsys.readouterr().out


def test_command_line_against_an_unreachable_server_is_a_clear_error_without_the_password(monkeypatch, caplog):
    # No ClickHouse server runs here (STACK.md): the server path meets a closed port.
    monkeypatch.setenv("CLICKHOUSE_URL", "http://admin:s3cret@127.0.0.1:1")
    assert migrate.main(["--status"]) == 2
    assert "cannot reach ClickHouse" in caplog.text and "s3cret" not in caplog.text
