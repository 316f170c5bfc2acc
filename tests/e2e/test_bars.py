"""Bars from the job (bounded file source, MiniCluster, chDB) against bars recomputed by ClickHouse
SQL over the trades the same run stored.

A planted trade goes 5 minutes back in time. Whether the watermark has passed its windows when it
arrives depends on when the periodic watermark (every 200 ms of processing time) was emitted, so
the test holds the job to the invariant instead: the trade is stored, and it is either in its bars
or a dead letter late for both of them and in neither. The lateness rule itself is unit-tested
with explicit watermarks (tests/test_bars.py)."""
import json

import pytest

from config import load
from flink_jobs.store import open_store
from producer.sources import read_any

from tests.conftest import sample_path
from tests.e2e.conftest import run_python, stack_env

pytestmark = pytest.mark.e2e

LATE_INDEX = 990          # this ETH trade (near the end of the input) is moved back ...
LATE_BY_MS = 300_000      # ... 5 minutes: before ETH's first trade, in windows closed once the watermark reached ETH
WHOLE_RANGE = {"from": "2017-07-01 00:00:00", "to": "2100-01-01 00:00:00"}
EXACT = ("open", "high", "low", "close", "trade_count")
SUMS = ("volume", "quote_volume", "vwap", "buy_volume", "sell_volume")


def write_input(path) -> dict:
    """Real XRPETH (2019) then real ETHUSDT (2023) trades, each in time order but one; returns that one."""
    xrp = [r.message for r in read_any(sample_path("XRPETH-trades-2019-10-11.csv"))]
    eth = [json.loads(r.message) for r in read_any(sample_path("ETHUSDT-trades-2023-02-02.csv"))]
    late = eth[LATE_INDEX]
    late["T"] -= LATE_BY_MS
    late["E"] = late["T"]
    path.write_text("\n".join(xrp + [json.dumps(m) for m in eth]) + "\n")
    return late


def test_job_bars_equal_bars_recomputed_from_stored_trades_and_a_late_trade_is_kept_counted_and_left_out(tmp_path):
    late = write_input(tmp_path / "trades.jsonl")
    chdb_path = str(tmp_path / "chdb")
    env = stack_env(SYMBOLS="ETHUSDT,XRPETH", DETECTION_METHODS="zscore", CHDB_PATH=chdb_path,
                    ZSCORE_THRESHOLDS="ETHUSDT=3.5,XRPETH=4.0", SINK_BATCH_SIZE=700)
    run_python(["flink_jobs/anomaly_job.py", "--source", "files", "--input", str(tmp_path / "trades.jsonl")], env)

    with open_store(load({"CHDB_PATH": chdb_path}).store) as store:
        # The late trade: stored in trades, a dead letter saying which bars it missed, in no bar.
        late_row = "symbol = 'ETHUSDT' AND trade_id = {id:UInt64}"
        assert store.scalar(f"SELECT count() FROM trades FINAL WHERE {late_row}", {"id": late["t"]}) == 1
        dead = store.query("SELECT symbol, trade_id, reason FROM dead_letters FINAL WHERE stage = 'bars'")
        assert len(dead) <= 1, dead
        if dead:
            assert (dead[0]["symbol"], dead[0]["trade_id"]) == ("ETHUSDT", late["t"])
            assert dead[0]["reason"].startswith("late for bar window") and "1 s and 60 s bar" in dead[0]["reason"]
            # The reference leaves out what the job's bars did.
            store.query(f"ALTER TABLE trades DELETE WHERE {late_row} SETTINGS mutations_sync = 1", {"id": late["t"]})

        job_bars = {(r["symbol"], r["interval_s"], r["window_start"]): r
                    for r in store.query("SELECT * EXCEPT inserted_at FROM bars FINAL")}
        reference = {(r["symbol"], r["interval_s"], r["window_start"]): r
                     for symbol in ("ETHUSDT", "XRPETH") for interval_s in (1, 60)
                     for r in store.run_named("bars_from_trades",
                                              {"symbol": symbol, "interval_s": interval_s, **WHOLE_RANGE})}
        stored_trades = store.scalar("SELECT count() FROM trades FINAL")

    assert stored_trades == 5000 + 1000 - len(dead)
    for interval_s in (1, 60):
        assert sum(r["trade_count"] for k, r in job_bars.items() if k[1] == interval_s) == stored_trades
    assert job_bars.keys() == reference.keys()
    assert len([k for k in job_bars if k[1] == 60]) > 100  # XRPETH's 17.6 hours and ETH's 3.5 minutes
    for key, ours in job_bars.items():
        theirs = reference[key]
        assert {c: ours[c] for c in EXACT} == {c: theirs[c] for c in EXACT}, key
        # Sums are the same trades added in another order: equal up to float rounding.
        assert {c: ours[c] for c in SUMS} == pytest.approx({c: theirs[c] for c in SUMS}, rel=1e-12, abs=1e-12), key
