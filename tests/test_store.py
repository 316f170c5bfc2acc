"""The store against the real embedded ClickHouse engine (chDB) and the shared sql/ files."""
import multiprocessing

import pytest

from config import load
from tests.conftest import PROJECT_DIR
from flink_jobs.store import TABLE_COLUMNS, ChdbStore, StoreError, open_store, schema_statements

TRADE = ("ETHUSDT", 1206419187, 1675329600138, 1675329600140, 1666.8, 26.062, 43440.14, False,
         0.0, 1666.7, 0.05, 2.0, 0.0, 0.0001, 0.5, -0.02, "20260101T000000Z")


@pytest.fixture
def store(tmp_path):
    cfg = load({"CHDB_PATH": str(tmp_path / "chdb")}).store
    with open_store(cfg) as s:
        s.apply_schema()
        yield s


def test_schema_applies_in_order_and_again_without_running_anything(store):
    names = [name for name, _ in schema_statements()]
    assert names == sorted(names) and names[0].startswith("001_")
    assert store.apply_schema() == 0


@pytest.mark.parametrize("table", sorted(TABLE_COLUMNS))
def test_the_job_row_layout_matches_the_ddl(store, table):
    described = store.query(f"DESCRIBE TABLE {table}")
    insertable = [r["name"] for r in described if r["default_type"] not in ("DEFAULT", "MATERIALIZED")]
    assert [name for name, _ in TABLE_COLUMNS[table]] == insertable


def test_tables_are_sorted_by_symbol_then_time_partitioned_by_day_and_replay_safe(store):
    rows = {r["name"]: r for r in store.query(
        "SELECT name, engine, sorting_key, partition_key FROM system.tables WHERE database = currentDatabase()")}
    for table in ("trades", "anomalies"):
        assert rows[table]["engine"] == "ReplacingMergeTree"
        assert rows[table]["sorting_key"].startswith("symbol, trade_time")
        assert rows[table]["partition_key"] == "toDate(trade_time)"
    assert rows["bars"]["engine"] == "ReplacingMergeTree"
    assert rows["bars"]["sorting_key"] == "symbol, interval_s, window_start"
    assert rows["dead_letters"]["engine"] == "ReplacingMergeTree"


def test_writing_the_same_trades_twice_keeps_one_row_each(store):
    batch = [TRADE, TRADE[:1] + (TRADE[1] + 1,) + TRADE[2:]]
    store.insert("trades", batch)
    store.insert("trades", batch)
    assert store.scalar("SELECT count() FROM trades FINAL") == 2
    store.query("OPTIMIZE TABLE trades FINAL")
    assert store.scalar("SELECT count() FROM trades") == 2


def test_values_round_trip_with_types_and_parameters(store):
    store.insert("trades", [TRADE])
    (row,) = store.query(
        "SELECT symbol, trade_id, toUnixTimestamp64Milli(trade_time) AS t, price, is_buyer_maker "
        "FROM trades WHERE symbol = {symbol:String}", {"symbol": "ETHUSDT"})
    assert row == {"symbol": "ETHUSDT", "trade_id": 1206419187, "t": 1675329600138, "price": 1666.8,
                   "is_buyer_maker": False}
    # A hostile value is data, never SQL.
    assert store.query("SELECT count() AS n FROM trades WHERE symbol = {symbol:String}",
                       {"symbol": "x' OR 1=1 --"}) == [{"n": 0}]


def test_identical_dead_letters_collapse_and_distinct_ones_stay(store):
    row = ("parse", "malformed JSON: x", "{oops", "", -1, 1675329600000)
    store.insert("dead_letters", [row, row[:5] + (1675329609999,), ("parse", "malformed JSON: y", "{other", "", -1, 1)])
    assert store.scalar("SELECT count() FROM dead_letters FINAL") == 2


def _hold_store(path, ready, release):
    with ChdbStore(load({"CHDB_PATH": path}).store):
        ready.set()
        release.wait(30)


def test_a_second_process_gets_a_clear_error_while_one_owns_the_embedded_store(tmp_path):
    path = str(tmp_path / "owned")
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    owner = ctx.Process(target=_hold_store, args=(path, ready, release))
    owner.start()
    try:
        assert ready.wait(60)
        with pytest.raises(StoreError, match="CHDB_PATH=.*open in another process"):
            ChdbStore(load({"CHDB_PATH": path}).store)
    finally:
        release.set()
        owner.join(30)
    with ChdbStore(load({"CHDB_PATH": path}).store) as reopened:
        assert reopened.scalar("SELECT 1") == 1


def test_a_clickhouse_url_selects_the_server_backend_and_an_unreachable_server_is_a_clear_error():
    # No ClickHouse server runs here (STACK.md): the real client meets a closed port.
    cfg = load({"CLICKHOUSE_URL": "http://reader:s3cret@127.0.0.1:1", "CLICKHOUSE_PASSWORD": "s3cret"}).store
    with pytest.raises(StoreError, match=r"cannot reach ClickHouse at CLICKHOUSE_URL=http://reader:\*\*\*@127.0.0.1:1") as caught:
        open_store(cfg)
    assert "s3cret" not in str(caught.value)


def test_two_operators_of_a_worker_share_one_store_and_the_last_to_release_it_closes_it(tmp_path):
    from flink_jobs.store import SharedStore

    cfg = load({"CHDB_PATH": str(tmp_path / "chdb")}).store
    scoring, sink = SharedStore.acquire(cfg), SharedStore.acquire(cfg)
    assert scoring is sink    # chDB: one connection per directory and process
    rows = [("ETHUSDT", 1, 0, 0, 1.0, 1.0, 1.0, False) + (0.0,) * 8 + ("v1",)]
    assert scoring.insert_payloads("trades", [rows]) == 1
    scoring.release()
    assert sink.query("SELECT count() AS n FROM trades") == [{"n": 1}]   # still open for the sink
    sink.release()
    with open_store(cfg) as store:   # closed: the directory is free for another owner
        assert store.scalar("SELECT count() FROM trades") == 1


def test_a_worker_that_exits_with_the_store_sink_open_exits_cleanly(tmp_path):
    """A sink whose close() never ran leaves the shared store to the interpreter's exit; the
    operator's open() freezes the heap (flink_jobs/worker_gc.py), and chDB's connection torn down
    that late crashed the process (exit 139) in about half the runs before atexit closed it."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import config
        from flink_jobs.operators import StoreSink
        from tests.test_score_batches import KeyedValue, RuntimeContext

        class SinkContext(RuntimeContext):
            def get_list_state(self, descriptor):
                return []

        StoreSink(config.load({{"CHDB_PATH": {str(tmp_path / "chdb")!r}}}).store).open(SinkContext(KeyedValue()))
        print("open")
    """)
    for _ in range(4):
        done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, capture_output=True, text=True,
                              timeout=120)
        assert (done.returncode, done.stdout.strip()) == (0, "open"), done.stderr[-2000:]
