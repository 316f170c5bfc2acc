import gzip
import json
import shutil
import zipfile

import pytest

from flink_jobs.trades import parse_trade
from producer.replay import Pacer, RatePacer, merged_records
from producer.sources import SourceError, read_any, symbol_from_filename

from tests.conftest import read_sample_trades, sample_path

ETH = "ETHUSDT-trades-2023-02-02.csv"


def parse_all(records):
    return [parse_trade(r.message, lambda s: True) for r in records]


def test_headerless_csv_gives_websocket_messages_keyed_by_the_symbol_in_the_file_name():
    records = list(read_any(sample_path(ETH)))
    rows = read_sample_trades(ETH)
    assert len(records) == 1000 and {r.symbol for r in records} == {"ETHUSDT"}
    first = json.loads(records[0].message)
    assert first == {"e": "trade", "E": 1675329600138, "s": "ETHUSDT", "t": 1206419187, "p": "1666.8",
                     "q": "26.062", "T": 1675329600138, "m": False, "M": True}
    assert [t.trade_id for t in parse_all(records)] == [int(r[0]) for r in rows]


def test_csv_with_header_gz_and_zip_read_the_same(tmp_path):
    plain = list(read_any(sample_path("XRPETH-trades-2019-10-11.csv")))
    gz = tmp_path / "XRPETH-trades-2019-10-11.csv.gz"
    with open(sample_path("XRPETH-trades-2019-10-11.csv"), "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    zipped = tmp_path / "XRPETH-trades-2019-10-11.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.write(sample_path("XRPETH-trades-2019-10-11.csv"), "XRPETH-trades-2019-10-11.csv")
    assert len(plain) == 5000
    assert list(read_any(str(gz))) == plain == list(read_any(str(zipped)))


def test_microsecond_csv_times_become_milliseconds(tmp_path):
    path = tmp_path / "BTCUSDT-trades-2025-01-01.csv"
    path.write_text("1,94000.5,0.01,940.005,1735689600123456,true,true\n")
    (trade,) = parse_all(read_any(str(path)))
    assert trade.trade_time_ms == 1735689600123 and trade.is_buyer_maker


def test_symbol_comes_from_the_option_when_the_file_name_does_not_say(tmp_path):
    path = tmp_path / "trades.csv"
    shutil.copy(sample_path(ETH), path)
    with pytest.raises(SourceError, match="--symbol"):
        list(read_any(str(path)))
    assert {r.symbol for r in read_any(str(path), "ETHUSDT")} == {"ETHUSDT"}
    assert symbol_from_filename("/x/BTCUSDT-trades-2024-01-01.zip") == "BTCUSDT"


def test_a_broken_csv_row_is_a_clear_error_naming_the_line(tmp_path):
    path = tmp_path / "BTCUSDT-trades-x.csv"
    path.write_text("1,94000.5,0.01,940.005,1735689600123,true,true\n2,oops,0.01,1,1735689600124,true,true\n")
    with pytest.raises(SourceError, match=r"BTCUSDT-trades-x.csv:2"):
        list(read_any(str(path)))


def test_json_lines_pass_through_verbatim_including_malformed_lines(tmp_path):
    good = {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 7, "p": "1", "q": "1", "T": 1675329600000, "m": True}
    lines = [json.dumps(good), "{broken", json.dumps({"stream": "btcusdt@trade", "data": good})]
    path = tmp_path / "frames.jsonl"
    path.write_text("\n".join(lines) + "\n")
    records = list(read_any(str(path)))
    assert [r.message for r in records] == lines
    assert [r.symbol for r in records] == ["BTCUSDT", None, "BTCUSDT"]
    assert [r.time_ms for r in records] == [1675329600000] * 3


def test_several_files_merge_in_trade_time_order():
    records = list(merged_records([sample_path(ETH), sample_path("XRPETH-trades-2019-10-11.csv")]))
    assert len(records) == 6000
    assert [r.time_ms for r in records] == sorted(r.time_ms for r in records)


@pytest.fixture
def stopped_clock(monkeypatch):
    """The pacers' clock stands still unless a test moves it; their sleeps are recorded, not slept."""
    clock = {"now": 100.0}
    slept = []
    monkeypatch.setattr("producer.replay.time.monotonic", lambda: clock["now"])
    monkeypatch.setattr("producer.replay.time.sleep", lambda s: slept.append(round(s, 6)))
    return clock, slept


def test_pacer_holds_records_to_their_recorded_spacing_times_the_speed(stopped_clock):
    _, slept = stopped_clock
    pacer = Pacer(speed=10.0)
    for t in (0, 1000, 3000):
        pacer.wait_for(t)
    assert slept == [0.1, 0.3]
    assert Pacer(None).wait_for(5) is None


def test_rate_pacer_spaces_records_evenly_in_wall_time_whatever_their_trade_times(stopped_clock):
    clock, slept = stopped_clock
    pacer = RatePacer(rate=4.0)
    for t in (5_000_000, 0, 86_400_000):   # times out of order and a day apart: no effect
        pacer.wait_for(t)
    assert slept == [0.25, 0.5]
    clock["now"] = 101.0                   # late (a slow send): the next record goes at once
    pacer.wait_for(0)
    assert slept == [0.25, 0.5]
