"""End to end: a misbehaving local Binance -> the live producer -> the real local Kafka broker.

Every valid trade must reach the trades topic exactly once per (symbol, trade id), in id order per
symbol; gaps are recorded with their id ranges and backfilled from the local REST server;
malformed frames are kept in the dead-letter topic; a broker that goes away and comes back loses
nothing, unless the bounded buffer's policy drops, and then every drop is counted."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from kafka import KafkaConsumer, TopicPartition

import config
from producer.live import LiveProducer
from producer.publisher import create_topic
from producer.binance_rest import BinanceRest
from tests.conftest import PROJECT_DIR
from tests.e2e.conftest import free_port, script, stack_env, unique
from tests.fakebinance import (FakeBinanceRest, FakeBinanceWebSocket, eth_trades, recorded_frames,
                               recorded_trade_frames, trade_frame)

pytestmark = pytest.mark.e2e

MALFORMED = ['{"stream":"ethusdt@trade","data":', '{"result":null,"id":1}',
             '{"stream":"ethusdt@trade","data":{"e":"trade","s":"ETHUSDT","t":1}}', 'not json at all']


def live_config(bootstrap, **env):
    prefix = unique("live")
    base = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC": f"{prefix}-trades",
            "KAFKA_DEAD_LETTER_TOPIC": f"{prefix}-dead", "KAFKA_GAPS_TOPIC": f"{prefix}-gaps",
            "LIVE_METRICS_PORT": "0", "WS_PING_INTERVAL_S": "0.5", "WS_PING_TIMEOUT_S": "0.3",
            "WS_RECONNECT_INITIAL_S": "0.05", "WS_RECONNECT_MAX_S": "0.2", "LIVE_STATS_INTERVAL_S": "2",
            "KAFKA_LINGER_MS": "5"}
    base.update({k: str(v) for k, v in env.items()})
    cfg = config.load(base)
    for topic in (cfg.kafka.topic, cfg.kafka.dead_letter_topic, cfg.kafka.gaps_topic):
        create_topic(cfg.kafka, topic=topic)
    return cfg


def read_topic(bootstrap, topic):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    end = consumer.end_offsets(partitions)
    records = []
    while any(consumer.position(tp) < end[tp] for tp in partitions):
        for batch in consumer.poll(timeout_ms=1000).values():
            records.extend(batch)
    consumer.close()
    return records


def wait_until(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


def trades_of(records):
    """(record, trade message) per trade, in topic order: a batch message holds several."""
    out = []
    for r in records:
        message = json.loads(r.value)
        out.extend((r, trade) for trade in (message if isinstance(message, list) else [message]))
    return out


def trade_ids_by_partition(records):
    by_partition = {}
    for r, message in trades_of(records):
        by_partition.setdefault((r.partition, message["s"]), []).append(message["t"])
    return by_partition


class EnqueueWatch(queue.Queue):
    """The producer's queue, noting which trade ids reach it in what order; the backfill thread's
    first trade is slowed, so that a live trade arriving meanwhile would overtake it if it could."""

    def __init__(self):
        super().__init__()
        self.trade_ids = []
        self.backfill_enqueuing = threading.Event()

    def put(self, item, block=True, timeout=None):
        if item.kind == "trade" and threading.current_thread().name == "backfill" and not self.backfill_enqueuing.is_set():
            self.backfill_enqueuing.set()
            time.sleep(0.5)
        if item.kind == "trade":
            self.trade_ids.append(item.trade_id)
        super().put(item, block, timeout)


def test_a_live_trade_after_a_backfill_is_queued_after_the_trades_the_backfill_released(kafka_broker):
    rows = eth_trades()[:10]
    rest = FakeBinanceRest({"ETHUSDT": rows})
    cfg = live_config(kafka_broker)
    producer = LiveProducer(cfg, ["ETHUSDT"], BinanceRest(rest.url))   # no websocket, no sender: only the queue
    producer.queue = watch = EnqueueWatch()
    producer.backfiller.start()
    try:
        producer.on_frame("c0", trade_frame("ETHUSDT", rows[0]))
        producer.on_frame("c0", trade_frame("ETHUSDT", rows[4]))    # gap 1..3 to backfill, 4 held
        assert watch.backfill_enqueuing.wait(10), "the backfill did not release the held trades"
        producer.on_frame("c0", trade_frame("ETHUSDT", rows[5]))    # live, while the release is enqueued
    finally:
        producer.backfiller.stop()
        producer.backfiller.join(5)
        producer.publisher.close(5)
        rest.close()
    assert watch.trade_ids == [r["id"] for r in rows[:6]]


def test_every_valid_trade_reaches_kafka_once_through_drops_silence_repeats_gaps_and_malformed_frames(kafka_broker):
    rows = eth_trades()
    recorded = recorded_trade_frames()
    eth = lambda a, b: [trade_frame("ETHUSDT", r) for r in rows[a:b]]
    nontrade = recorded_frames()[:5]

    def plan(index, path):
        if index == 0:   # repeats 250..299, a gap 300..349, malformed and real non-trade frames, then a cut
            return [("frames", recorded + eth(0, 300) + eth(250, 300) + MALFORMED + nontrade + eth(350, 500)),
                    ("drop",)]
        if index == 1:   # overlaps 480..499 again, then goes silent: only the ping timeout notices
            return [("frames", eth(480, 700)), ("silence",)]
        return [("frames", eth(700, 1000)), ("stay",)]

    server, rest = FakeBinanceWebSocket(plan), FakeBinanceRest({"ETHUSDT": rows})
    cfg = live_config(kafka_broker, BINANCE_WS_URL=server.url)
    symbols = ["ETHUSDT"] + sorted({json.loads(f)["data"]["s"] for f in recorded})
    producer = LiveProducer(cfg, symbols, BinanceRest(rest.url), rand=lambda: 1.0).start()
    expected_trades = 1000 + len(recorded)
    try:
        wait_until(lambda: producer.metrics.value("trades_published_total") >= expected_trades
                   and producer.metrics.value("acked_total", kind="gap") >= 2
                   and producer.metrics.value("acked_total", kind="dead_letter") >= 9, what="all acknowledged")
    finally:
        producer.stop()
        server.close(), rest.close()

    trades = read_topic(kafka_broker, cfg.kafka.topic)
    keys = [(message["s"], message["t"]) for _, message in trades_of(trades)]
    assert len(keys) == len(set(keys)) == expected_trades
    assert sorted(t for s, t in keys if s == "ETHUSDT") == [r["id"] for r in rows]
    for ids in trade_ids_by_partition(trades).values():
        assert ids == sorted(ids)               # backfilled trades went out before the held ones
    assert all(r.key.decode() == message["s"] for r, message in trades_of(trades))
    # A burst of a symbol's trades shares messages (KAFKA_MESSAGE_TRADES, KAFKA_MESSAGE_LINGER_MS)
    assert len(trades) < expected_trades / 2

    gaps = [json.loads(r.value) for r in read_topic(kafka_broker, cfg.kafka.gaps_topic)]
    first = rows[300]["id"]
    assert [(g["symbol"], g["first_id"], g["last_id"], g["status"], g.get("backfilled")) for g in gaps] == [
        ("ETHUSDT", first, first + 49, "open", None), ("ETHUSDT", first, first + 49, "filled", 50)]

    dead = read_topic(kafka_broker, cfg.kafka.dead_letter_topic)
    assert sorted(r.value.decode() for r in dead) == sorted(MALFORMED + nontrade)
    assert all(dict(r.headers)["reason"] for r in dead)

    m = producer.metrics
    assert (m.value("duplicates_total"), m.value("malformed_frames_total"), m.value("gap_trades_total")) == (70, 9, 50)
    assert (m.value("dropped_total"), m.value("send_failed_total")) == (0, 0)
    assert m.value("reconnects_total") >= 2 and producer.connections[0].delays[:2] == [0.05, 0.05]
    assert server.connections[1].client_pings >= 1 and server.connections[1].pongs == []


def test_a_broker_that_goes_away_and_comes_back_loses_nothing_and_a_small_buffer_counts_every_drop(kafka_broker):
    rows = eth_trades()
    eth = lambda a, b: [trade_frame("ETHUSDT", r) for r in rows[a:b]]
    broker_down, broker_back = threading.Event(), threading.Event()
    plan = lambda index, path: [("frames", eth(0, 300)), ("wait_event", broker_down), ("frames", eth(300, 700)),
                                ("wait_event", broker_back), ("frames", eth(700, 1000)), ("stay",)]
    servers = [FakeBinanceWebSocket(plan), FakeBinanceWebSocket(plan)]
    roomy = LiveProducer(live_config(kafka_broker, BINANCE_WS_URL=servers[0].url), ["ETHUSDT"]).start()
    # One trade per message: the buffer bounds below count messages
    small = LiveProducer(live_config(kafka_broker, BINANCE_WS_URL=servers[1].url, LIVE_QUEUE_SIZE=50,
                                     LIVE_MAX_UNACKED=50, LIVE_ENQUEUE_TIMEOUT_MS=0, KAFKA_MESSAGE_TRADES=1),
                         ["ETHUSDT"]).start()
    producers = (roomy, small)
    acked = lambda p: p.metrics.value("trades_published_total")
    dropped = lambda p: p.metrics.by_label("dropped_total", "kind").get("trade", 0)
    try:
        wait_until(lambda: all(acked(p) + dropped(p) == 300 for p in producers), what="first 300 settled")
        dropped_before_outage = dropped(small)   # a burst can overrun 50 slots even with the broker up
        script("kafka.sh", "stop")
        broker_down.set()
        wait_until(lambda: all(s.connections[0].sent_frames == 700 for s in servers), what="frames sent")
        wait_until(lambda: all(p.metrics.value("frames_total") == 700 for p in producers), what="frames received")
        # 400 trades arrived with the broker down; at most 50 queued, 50 unacknowledged and the one in
        # the sender's hand could be kept
        assert dropped(small) - dropped_before_outage >= 400 - 50 - 50 - 1
        script("kafka.sh", "start")
        broker_back.set()
        wait_until(lambda: all(acked(p) + dropped(p) == 1000 for p in producers), timeout=90,
                   what="every trade acknowledged or counted as dropped")
    finally:
        for p in producers:
            p.stop()
        for s in servers:
            s.close()
        script("kafka.sh", "start")     # whatever happened, leave the session's broker up

    published = {}
    for p in producers:
        records = read_topic(kafka_broker, p.kafka.topic)
        ids = [message["t"] for _, message in trades_of(records)]
        assert len(ids) == len(set(ids)), "a trade was written twice"
        published[p] = ids
        assert p.metrics.value("send_failed_total") == 0
    assert sorted(published[roomy]) == [r["id"] for r in rows] and dropped(roomy) == 0
    # every trade is either in the topic once or counted as dropped: nothing lost silently
    assert len(published[small]) + dropped(small) == 1000
    assert small.metrics.value("dropped_total") == dropped(small)   # only trades were dropped


def test_the_live_command_serves_probes_and_metrics_and_flushes_everything_on_sigterm(kafka_broker):
    rows = eth_trades()
    server = FakeBinanceWebSocket(lambda i, path: [("frames", [trade_frame("ETHUSDT", r) for r in rows]), ("stay",)])
    rest = FakeBinanceRest({"ETHUSDT": rows})
    port, prefix = free_port(), unique("live-cli")
    env = stack_env(KAFKA_BOOTSTRAP_SERVERS=kafka_broker, KAFKA_TOPIC=f"{prefix}-trades",
                    KAFKA_DEAD_LETTER_TOPIC=f"{prefix}-dead", KAFKA_GAPS_TOPIC=f"{prefix}-gaps", LIVE_STATS_INTERVAL_S=1)
    process = subprocess.Popen([sys.executable, "-m", "producer", "live", "--symbols", "ETHUSDT,NOSUCHUSDT",
                                "--ws-url", server.url, "--rest-url", rest.url, "--metrics-port", str(port),
                                "--create-topics"], cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    get = lambda path: urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2).read().decode()
    published_line = 'producer_trades_published_total{symbol="ETHUSDT"} 1000'

    def metrics_say_all_published():
        try:
            return published_line in get("/metrics")
        except OSError:
            return False
    try:
        wait_until(metrics_say_all_published, what="1000 trades in /metrics")
        assert get("/healthz") == "ok\n" and get("/readyz") == "ready\n"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        server.close(), rest.close()
    assert process.returncode == 0, output
    assert "signal 15: stopping" in output and "final stats: published=1000" in output
    assert "NOSUCHUSDT" in output     # left out after the exchangeInfo check, and said so
    ids = [message["t"] for _, message in trades_of(read_topic(kafka_broker, f"{prefix}-trades"))]
    assert sorted(ids) == [r["id"] for r in rows]
