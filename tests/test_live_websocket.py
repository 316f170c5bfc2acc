"""The websocket connection against a local, misbehaving Binance: pings, drops, silence, the 24-hour cut."""
import collections
import json
import threading
import time

import pytest

from flink_jobs.trades import InvalidTrade
from producer.binance_rest import BinanceRest, RestError, resolve_symbols
from producer.binance_ws import Backoff, BinanceConnection, stream_urls
from producer.live import decode_frame
from tests.fakebinance import (FakeBinanceRest, FakeBinanceWebSocket, _frame, eth_trades, recorded_frames,
                               recorded_trade_frames, trade_frame)


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def connection(url, frames, **kw):
    settings = dict(ping_interval_s=5.0, ping_timeout_s=2.0, max_age_s=3600.0,
                    backoff=Backoff(0.05, 0.4, rand=lambda: 1.0))
    settings.update(kw)
    conn = BinanceConnection("c0", url + "/stream?streams=ethusdt@trade",
                             lambda name, text: frames.append(text), **settings)
    conn.start()
    return conn


@pytest.fixture
def frames():
    return []


def test_streams_are_split_within_the_per_connection_limit_for_every_usdt_pair():
    rest = FakeBinanceRest({})
    try:
        symbols = resolve_symbols(("*",), BinanceRest(rest.url), "USDT")
    finally:
        rest.close()
    assert len(symbols) == 315 and "BTCUSDT" in symbols      # real exchangeInfo of 2021-10-12
    urls = stream_urls("wss://stream.binance.com:9443", symbols, 200)
    streams = [s for url in urls for s in url.split("streams=")[1].split("/")]
    assert len(urls) == 2 and sorted(streams) == sorted(f"{s.lower()}@trade" for s in symbols)
    assert all(len(url.split("streams=")[1].split("/")) <= 200 for url in urls)


def test_a_configured_symbol_list_is_checked_against_exchange_info_and_kept_when_rest_is_down():
    rest = FakeBinanceRest({})
    try:
        assert resolve_symbols(("ETHUSDT", "NOSUCHUSDT"), BinanceRest(rest.url), "USDT") == ["ETHUSDT"]
    finally:
        rest.close()
    assert resolve_symbols(("ETHUSDT", "NOSUCHUSDT"), BinanceRest(rest.url, 0.5), "USDT") == ["ETHUSDT", "NOSUCHUSDT"]


def test_backoff_doubles_up_to_its_maximum_with_jitter_in_the_upper_half():
    low = Backoff(1.0, 8.0, rand=lambda: 0.0)
    high = Backoff(1.0, 8.0, rand=lambda: 1.0)
    assert [low.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [high.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    high.reset()
    assert high.next_delay() == 1.0


def test_a_server_ping_gets_a_pong_with_its_payload(frames):
    server = FakeBinanceWebSocket(lambda i, path: [("ping", b"binance-1"), ("wait_pong", 5), ("stay",)])
    conn = connection(server.url, frames)
    try:
        wait_until(lambda: server.connections and server.connections[0].pongs)
        assert server.connections[0].pongs == [b"binance-1"]
        assert server.connections[0].path == "/stream?streams=ethusdt@trade"
    finally:
        conn.stop(), server.close()


def test_dropped_connections_are_reopened_after_growing_jittered_delays(frames):
    rows = eth_trades()
    server = FakeBinanceWebSocket(lambda i, path: [("drop",)] if i < 3 else [("frames", [trade_frame("ETHUSDT", rows[0])]), ("drop",)])
    conn = connection(server.url, frames, backoff=Backoff(0.05, 0.15, rand=lambda: 1.0))
    try:
        wait_until(lambda: len(conn.delays) >= 5)
    finally:
        conn.stop(), server.close()
    # three dead connections: 0.05, 0.1, 0.15 (capped); each that delivered a frame resets the schedule
    assert conn.delays[:5] == [0.05, 0.1, 0.15, 0.05, 0.05]
    opened = [c.opened for c in server.connections]
    gaps = [b - a for a, b in zip(opened, opened[1:])]
    assert all(gap >= delay for gap, delay in zip(gaps, conn.delays))  # it did wait what it chose


def test_a_server_that_goes_silent_is_detected_by_the_ping_timeout_and_left(frames):
    rows = eth_trades()
    server = FakeBinanceWebSocket(lambda i, path: [("frames", [trade_frame("ETHUSDT", rows[i])]), ("silence",)])
    conn = connection(server.url, frames, ping_interval_s=0.3, ping_timeout_s=0.2)
    try:
        # the second connection's frame as well: it can arrive after the connection is counted
        wait_until(lambda: len(server.connections) >= 2 and len(frames) >= 2)
    finally:
        conn.stop(), server.close()
    first = server.connections[0]
    assert first.client_pings >= 1 and first.pongs == []   # it pinged, heard nothing, reconnected
    assert [json.loads(f)["data"]["t"] for f in frames[:2]] == [rows[0]["id"], rows[1]["id"]]


def test_a_connection_is_reopened_at_once_when_it_reaches_its_maximum_age(frames):
    server = FakeBinanceWebSocket(lambda i, path: [("stay",)])
    events = []
    conn = connection(server.url, frames, max_age_s=0.3, backoff=Backoff(5.0, 5.0),
                      on_event=lambda name, event, info: events.append(event))
    try:
        wait_until(lambda: len(server.connections) >= 3)
    finally:
        conn.stop(), server.close()
    assert conn.delays[:2] == [0.0, 0.0]    # planned: no backoff (the schedule would say 2.5 s or more)
    assert events[:4] == ["open", "age_out", "close", "reconnect_wait"]
    assert server.connections[0].closed_at is not None


def test_recorded_frames_of_other_events_are_rejected_with_a_reason_and_trade_frames_decode():
    accepted = {"ETHUSDT", "NKNUSDT", "LRCBTC", "BLZETH", "RUNEEUR"}.__contains__
    reasons = []
    for raw in recorded_frames():
        with pytest.raises(InvalidTrade) as error:
            decode_frame(raw, accepted)
        reasons.append(str(error.value))
    # depthUpdate, kline and aggTrade say their type; bookTicker frames carry no "e" and lack trade fields
    assert collections.Counter(r.split(":")[0].split(" '")[0] for r in reasons) == {
        "unsupported event type": 181, "missing fields": 84}
    decoded = [decode_frame(raw, accepted) for raw in recorded_trade_frames()]
    assert decoded and all(json.loads(message)["e"] == "trade" for _, _, message in decoded)
    symbol, trade_id, message = decode_frame(trade_frame("ETHUSDT", eth_trades()[0]), accepted)
    assert (symbol, trade_id, json.loads(message)["p"]) == ("ETHUSDT", 1206419187, "1666.8")


@pytest.mark.parametrize("raw, reason", [
    ('{"stream":"ethusdt@trade","data":', "malformed JSON"),
    ('{"result":null,"id":1}', "not a combined-stream frame"),
    ('{"stream":"ethusdt@trade","data":{"e":"trade","s":"ETHUSDT","t":1}}', "missing fields"),
    ('{"stream":"dogeusdt@trade","data":{"e":"trade","E":1675329600141,"s":"DOGEUSDT","t":1,"p":"1","q":"1",'
     '"T":1675329600138,"m":true}}', "unknown symbol"),
])
def test_malformed_frames_are_rejected_with_their_reason(raw, reason):
    with pytest.raises(InvalidTrade, match=reason):
        decode_frame(raw, {"ETHUSDT"}.__contains__)


def test_backfill_pages_through_historical_trades_and_keeps_binance_strings():
    rest = FakeBinanceRest({"ETHUSDT": eth_trades()})
    try:
        client = BinanceRest(rest.url)
        first = eth_trades()[0]["id"]
        trades = client.trades_between("ETHUSDT", first + 10, first + 999 + 5)   # beyond the end: what exists
    finally:
        rest.close()
    assert [t.trade_id for t in trades] == list(range(first + 10, first + 1000))
    assert sum("historicalTrades" in r for r in rest.requests) == 2   # 1,000 per request at most
    assert json.loads(trades[0].message)["p"] == eth_trades()[10]["price"]


TEXT, CONT = 0x1, 0x0


@pytest.mark.parametrize("oversize, reported", [
    (_frame(TEXT, b"x" * 4096), 4096),                                       # one frame over the limit
    (bytes([0x81, 127]) + (2**62).to_bytes(8, "big"), 2**62),                # a header alone, announcing 4 EiB
    (_frame(TEXT, b"[" * 600, fin=False) + _frame(CONT, b"1" * 600, fin=False)
     + _frame(CONT, b"]" * 600), 1200),                                      # fragments: refused at the second
])
def test_a_message_over_the_size_limit_closes_the_connection_unread_and_the_next_one_works(frames, oversize, reported):
    rows = eth_trades()
    server = FakeBinanceWebSocket(lambda i, path: [("raw", oversize), ("stay",)] if i == 0 else
                                  [("frames", [trade_frame("ETHUSDT", rows[0])]), ("stay",)])
    events = []
    conn = connection(server.url, frames, max_message_bytes=1024, on_event=lambda *e: events.append(e))
    try:
        wait_until(lambda: frames)
    finally:
        conn.stop(), server.close()
    assert [json.loads(f)["data"]["t"] for f in frames] == [rows[0]["id"]]   # the oversize one never arrived
    oversize_events = [info for _, event, info in events if event == "oversize_message"]
    assert oversize_events[0]["limit"] == 1024
    assert oversize_events[0] == {"bytes": reported, "limit": 1024}
    assert len(server.connections) == 2 and server.connections[0].closed_at is not None


def test_a_rest_answer_over_the_size_limit_is_an_error_not_a_memory_spike():
    rest = FakeBinanceRest({})
    try:
        with pytest.raises(RestError, match="answer larger than BINANCE_REST_MAX_BYTES=100000"):
            BinanceRest(rest.url, max_bytes=100_000).trading_symbols()      # exchangeInfo is 131 KB here
        assert len(BinanceRest(rest.url, max_bytes=200_000).trading_symbols()) > 1000
    finally:
        rest.close()
