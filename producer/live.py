"""The live producer: Binance websocket trade streams -> Kafka, with gaps, duplicates and drops accounted for.

    websocket threads ──► on_frame: parse, sequence ──► bounded queue ──► sender thread ──► Kafka
         (one per ≤N streams)     │  malformed ─► dead-letter topic           (kafka-python, acks=all)
                                  └─ gap ─► gaps topic + backfill thread (REST) ─┘

Where each message goes:
- a valid trade frame: its `data` object, unchanged in shape (the websocket trade the Flink job
  parses), to KAFKA_TOPIC keyed by symbol, once per (symbol, trade id) — see producer/gaps.py;
  a symbol's trades within KAFKA_MESSAGE_LINGER_MS share one batch message (a JSON array of
  them, at most KAFKA_MESSAGE_TRADES; producer/batching.py), a trade alone leaves as it came;
- a frame that is not a valid trade: the raw frame to KAFKA_DEAD_LETTER_TOPIC with headers
  `reason`, `connection` and `received_at`, counted in producer_malformed_frames_total;
- a gap in a symbol's trade ids: JSON records to KAFKA_GAPS_TOPIC (status `open` when found, then
  `filled`, `partial`, `unfilled` or `abandoned`), a warning in the log, producer_gaps_total.

Drop policy (the only way a received trade does not reach Kafka): when the queue to the sender is
full (Kafka slower than Binance for longer than LIVE_QUEUE_SIZE messages), a websocket thread waits
LIVE_ENQUEUE_TIMEOUT_MS for room, then drops the message, counts it in
producer_dropped_total{kind,reason="queue_full"} and logs an error with the symbol and trade id.
A websocket thread never blocks longer: a thread stuck on Kafka would stop answering pings and
Binance would cut the connection, losing more. Messages Kafka refuses after
KAFKA_DELIVERY_TIMEOUT_MS count in producer_send_failed_total. Both are losses; nothing is lost
silently.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import NamedTuple

from config import AppConfig
from flink_jobs.trades import InvalidTrade, dead_letter_raw, load_json, parse_trade
from producer.backfill import Backfiller
from producer.batching import Batch, MessageBatcher, may_share
from producer.binance_rest import BinanceRest
from producer.binance_ws import Backoff, BinanceConnection, stream_urls
from producer.gaps import Gap, Out, Sequencer
from producer.metrics import HealthServer, Metrics
from producer.publisher import Publisher

log = logging.getLogger(__name__)


class Item(NamedTuple):
    kind: str                  # trade | dead_letter | gap
    topic: str
    key: str | None
    value: bytes
    headers: list | None
    received: float            # monotonic time of receipt, for the send latency
    trade_id: int | None = None
    batchable: bool = True     # a trade the job's parser accepts inside a batch message


class InFlight:
    """How many trades and records are in Kafka's hands, bounded: a message of n of them waits
    until n fit (or nothing else is in flight, for a message larger than the bound)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0
        self._changed = threading.Condition()

    def take(self, n: int, timeout_s: float) -> bool:
        with self._changed:
            if not self._changed.wait_for(lambda: self.count == 0 or self.count + n <= self.limit, timeout_s):
                return False
            self.count += n
            return True

    def give_back(self, n: int) -> None:
        with self._changed:
            self.count -= n
            self._changed.notify_all()


def decode_frame(raw: str, accepts) -> tuple[str, int, str]:
    """(symbol, trade id, message to publish) of a combined-stream trade frame, or InvalidTrade."""
    frame = load_json(raw)      # bounded: size first, then JSON, nesting and finiteness
    if not isinstance(frame, dict) or not isinstance(frame.get("data"), dict) or "stream" not in frame:
        raise InvalidTrade("not a combined-stream frame", "expected {\"stream\": ..., \"data\": {...}}")
    message = json.dumps(frame["data"], separators=(",", ":"))
    trade = parse_trade(message, accepts)      # the Flink job's own validation: what passes here, passes there
    return trade.symbol, trade.trade_id, message


class LiveProducer:
    def __init__(self, cfg: AppConfig, symbols: list[str], rest: BinanceRest | None = None,
                 metrics: Metrics | None = None, rand=None):
        self.cfg = cfg
        self.kafka = cfg.kafka
        self.live = cfg.live
        self.symbols = list(symbols)
        self.accepted = set(self.symbols)
        self.metrics = metrics or Metrics()
        self.publisher = Publisher(cfg.kafka, client_id="live-producer")
        self.sequencer = Sequencer(backfill=bool(rest) and self.live.backfill,
                                   backfill_max_trades=self.live.backfill_max_trades, hold_max=self.live.backfill_hold_max)
        self.queue: queue.Queue = queue.Queue(self.live.queue_size)
        self.batcher = MessageBatcher(cfg.kafka.message_trades, cfg.kafka.message_linger_ms / 1000)
        self.backfiller = Backfiller(rest, self._on_backfilled) if (rest and self.live.backfill) else None
        backoff_args = (self.live.reconnect_initial_s, self.live.reconnect_max_s) + ((rand,) if rand else ())
        self.connections = [
            BinanceConnection(f"c{i}", url, self.on_frame, ping_interval_s=self.live.ping_interval_s,
                              ping_timeout_s=self.live.ping_timeout_s, max_age_s=self.live.max_connection_age_s,
                              backoff=Backoff(*backoff_args), on_event=self._on_connection_event,
                              max_message_bytes=self.live.max_message_bytes)
            for i, url in enumerate(stream_urls(self.live.ws_url, self.symbols, self.live.max_streams_per_connection))]
        # The sequencer decides under its own lock, but its decisions reach the queue afterwards: the
        # backfill thread releasing held trades and a websocket thread publishing the next live one
        # could enqueue out of id order (and the job drops a lower id as a repeat). Deciding and
        # enqueuing under one lock keeps the queue in the order the sequencer released. Re-entrant:
        # a full backfill queue settles its gap from the websocket thread (_on_gap).
        self._in_order = threading.RLock()
        self._stopping = threading.Event()
        self._abandon = threading.Event()   # set when a stop has waited long enough for Kafka
        self._unacked = InFlight(self.live.max_unacked)
        self._sender = threading.Thread(target=self._send_loop, name="kafka-sender", daemon=True)
        self._stats = threading.Thread(target=self._stats_loop, name="stats", daemon=True)
        self.health: HealthServer | None = None
        self._last_drop_log = 0.0
        self._describe_metrics()

    # Lifecycle -----------------------------------------------------------------------------------
    def start(self) -> "LiveProducer":
        log.info("live producer: %d symbols over %d connections to %s; topic=%s dead_letters=%s gaps=%s",
                 len(self.symbols), len(self.connections), self.live.ws_url, self.kafka.topic,
                 self.kafka.dead_letter_topic, self.kafka.gaps_topic)
        if self.live.metrics_port:
            self.health = HealthServer(self.live.metrics_port, self.metrics, self.is_alive, self.readiness).start()
            log.info("metrics and probes on :%d (/metrics /healthz /readyz)", self.health.port)
        self._sender.start()
        self._stats.start()
        if self.backfiller:
            self.backfiller.start()
        for connection in self.connections:
            connection.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful stop: close the websockets, release held trades, drain the queue, flush Kafka."""
        log.info("stopping: closing %d connections", len(self.connections))
        for connection in self.connections:
            connection.stop()
        for connection in self.connections:
            connection.join(timeout=5)
        if self.backfiller:
            self.backfiller.stop()
            self.backfiller.join(timeout=5)
        with self._in_order:
            held, abandoned = self.sequencer.release_all()
            for gap in abandoned:
                self._record_gap(gap, "abandoned", reason="shutdown")
            for out in held:
                self._enqueue_trade(out, time.monotonic())
        self._stopping.set()
        self._sender.join(timeout=timeout_s)
        if self._sender.is_alive():
            log.error("Kafka did not take the queue within %.0f s; counting what is left as dropped", timeout_s)
            self._abandon.set()
            self._sender.join()
        try:
            self.publisher.close(timeout_s)
        finally:
            if self.health:
                self.health.stop()
        self.log_stats(final=True)

    def is_alive(self) -> bool:
        return self._sender.is_alive() and not self._stopping.is_set()

    def readiness(self) -> tuple[bool, str]:
        closed = [c.conn_name for c in self.connections if not c.is_open.is_set()]
        if closed:
            return False, f"websocket not open: {','.join(closed)}"
        if not self.publisher.reachable():
            return False, "kafka not reachable"
        return True, "ready"

    # Websocket side (connection threads) ----------------------------------------------------------
    def on_frame(self, connection: str, raw: str) -> None:
        received = time.monotonic()
        self.metrics.inc("frames_total", connection=connection)
        try:
            symbol, trade_id, message = decode_frame(raw, self.accepted.__contains__)
        except InvalidTrade as error:
            self._dead_letter(connection, raw, str(error), received)
            return
        with self._in_order:
            decision = self.sequencer.on_trade(symbol, trade_id, message, connection)
            if decision.duplicate:
                self.metrics.inc("duplicates_total", symbol=symbol)
                log.debug("duplicate dropped symbol=%s trade_id=%d connection=%s", symbol, trade_id, connection)
                return
            if decision.gap:
                self._on_gap(decision.gap, decision.backfill)
            for gap in decision.abandoned:
                self._record_gap(gap, "abandoned", reason="hold limit reached")
            for out in decision.publish:
                self._enqueue_trade(out, received)

    def _dead_letter(self, connection: str, raw: str, reason: str, received: float) -> None:
        self.metrics.inc("malformed_frames_total", connection=connection)
        log.warning("malformed frame connection=%s reason=%s frame=%.200s", connection, reason, raw)
        raw, reason = dead_letter_raw(raw, reason)   # cut as the job cuts its dead letters: within Kafka's limit
        headers = [("reason", reason.encode()), ("connection", connection.encode()),
                   ("received_at", str(int(time.time() * 1000)).encode())]
        self._enqueue(Item("dead_letter", self.kafka.dead_letter_topic, None, raw.encode("utf-8", "replace"),
                           headers, received))

    def _on_gap(self, gap: Gap, backfill: bool) -> None:
        self.metrics.inc("gaps_total", symbol=gap.symbol)
        self.metrics.inc("gap_trades_total", gap.missing, symbol=gap.symbol)
        log.warning("gap symbol=%s missing_ids=%d..%d count=%d connection=%s backfill=%s", gap.symbol,
                    gap.first_id, gap.last_id, gap.missing, gap.connection, backfill)
        if backfill and self.backfiller and self.backfiller.submit(gap):
            self._record_gap(gap, "open")
        elif backfill:
            self._on_backfilled(gap, None, "backfill queue full")
        else:
            self._record_gap(gap, "unfilled", reason="backfill off or gap too large")

    def _record_gap(self, gap: Gap, status: str, **extra) -> None:
        record = json.dumps(gap.record(status, **extra), separators=(",", ":")).encode()
        self._enqueue(Item("gap", self.kafka.gaps_topic, gap.symbol, record, None, time.monotonic()))

    # Backfill side (backfill thread) --------------------------------------------------------------
    def _on_backfilled(self, gap: Gap, trades: list[Out] | None, error: str) -> None:
        with self._in_order:
            self._settle_backfill(gap, trades, error)

    def _settle_backfill(self, gap: Gap, trades: list[Out] | None, error: str) -> None:
        result = self.sequencer.on_backfill(gap, trades or [])
        if result is None:
            self.metrics.inc("backfill_late_total", symbol=gap.symbol)
            log.warning("backfill of symbol=%s ids=%d..%d came after the gap was abandoned; not published",
                        gap.symbol, gap.first_id, gap.last_id)
            return
        publish, filled = result
        self.metrics.inc("backfilled_trades_total", filled, symbol=gap.symbol)
        status = "unfilled" if trades is None else ("filled" if filled == gap.missing else "partial")
        log.info("backfill symbol=%s ids=%d..%d status=%s filled=%d/%d%s", gap.symbol, gap.first_id, gap.last_id,
                 status, filled, gap.missing, f" error={error}" if error else "")
        self._record_gap(gap, status, backfilled=filled, **({"error": error} if error else {}))
        now = time.monotonic()
        for out in publish:
            # REST rows are not websocket frames: checked as the job will check them in a batch
            # message, so that one bad row does not make its batch a dead letter.
            self._enqueue_trade(out, now, batchable=may_share(out.message, out.symbol))

    # Queue and sender ------------------------------------------------------------------------------
    def _enqueue_trade(self, out: Out, received: float, batchable: bool = True) -> None:
        self._enqueue(Item("trade", self.kafka.topic, out.symbol, out.message.encode(), None, received, out.trade_id,
                           batchable))

    def _enqueue(self, item: Item) -> None:
        try:
            self.queue.put(item, timeout=self.live.enqueue_timeout_ms / 1000)
        except queue.Full:
            self.metrics.inc("dropped_total", kind=item.kind, reason="queue_full")
            now = time.monotonic()
            if now - self._last_drop_log >= 1.0:    # loud, but not one line per message at 10k/s
                self._last_drop_log = now
                log.error("DROPPED kind=%s symbol=%s trade_id=%s: queue full (%d messages) for %d ms; "
                          "dropped so far: %d", item.kind, item.key, item.trade_id, self.live.queue_size,
                          self.live.enqueue_timeout_ms, self.metrics.value("dropped_total"))

    def _send_loop(self) -> None:
        """Trades go through the batcher (their message leaves when full or due), gap records and
        dead letters straight on; on stop, the queue is emptied, then the batcher."""
        while True:
            due_in = self.batcher.next_due_in()
            try:
                item = self.queue.get(timeout=0.1 if due_in is None else min(0.1, due_in))
            except queue.Empty:
                item = None
            if item is not None and item.kind == "trade":
                add = self.batcher.add if item.batchable else self.batcher.alone
                for batch in add(item.key, item.value, item):
                    self._send_batch(batch)
            elif item is not None:
                self._send(item.kind, item.topic, item.key, item.value, item.headers, [item])
            for batch in self.batcher.due():
                self._send_batch(batch)
            if item is None and self._stopping.is_set():
                for batch in self.batcher.drain():
                    self._send_batch(batch)
                return

    def _send_batch(self, batch: Batch) -> None:
        self._send("trade", self.kafka.topic, batch.symbol, batch.value, None, batch.tags)

    def _send(self, kind: str, topic: str, key: str | None, value: bytes, headers: list | None,
              items: list[Item]) -> None:
        """One Kafka message carrying `items` (several trades of a batch message, or one item)."""
        # Bounds what kafka-python buffers (it has no memory limit of its own): above LIVE_MAX_UNACKED
        # trades and records the sender waits, the queue fills, and the drop policy applies.
        while not self._unacked.take(len(items), timeout_s=0.1):
            if self._abandon.is_set():
                self.metrics.inc("dropped_total", len(items), kind=kind, reason="shutdown")
                return
        while True:
            try:
                future = self.publisher.send(key, value, topic=topic, headers=headers, trades=len(items))
                break
            except Exception as error:   # KafkaTimeoutError: no metadata within max_block_ms
                if self._abandon.is_set():
                    self._unacked.give_back(len(items))
                    self.metrics.inc("dropped_total", len(items), kind=kind, reason="shutdown")
                    return
                self.metrics.inc("send_retries_total", kind=kind)
                log.warning("kafka send blocked (%s); retrying kind=%s key=%s", error, kind, key)
        self.metrics.inc("sent_total", kind=kind)
        future.add_callback(self._acked, kind, items).add_errback(self._failed, kind, key, items)

    def _acked(self, kind: str, items: list[Item], _metadata) -> None:
        self._unacked.give_back(len(items))
        self.metrics.inc("acked_total", kind=kind)
        if kind == "trade":
            now = time.monotonic()
            self.metrics.inc("trades_published_total", len(items), symbol=items[0].key)
            for item in items:
                self.metrics.observe_latency(now - item.received)

    def _failed(self, kind: str, key: str | None, items: list[Item], error: Exception) -> None:
        self._unacked.give_back(len(items))
        self.metrics.inc("send_failed_total", len(items), kind=kind)
        ids = [item.trade_id for item in items if item.trade_id is not None]
        log.error("LOST kind=%s key=%s trade_ids=%s: Kafka did not take it within the delivery timeout: %s",
                  kind, key, f"{ids[0]}..{ids[-1]} ({len(ids)} trades)" if len(ids) > 1 else (ids or [None])[0],
                  error)

    # Observability ---------------------------------------------------------------------------------
    def _on_connection_event(self, connection: str, event: str, info: dict) -> None:
        if event == "reconnect_wait":
            self.metrics.inc("reconnects_total", connection=connection, planned=str(info["aged_out"]).lower())
        elif event == "age_out":
            self.metrics.inc("planned_reconnects_total", connection=connection)
        elif event == "oversize_message":
            self.metrics.inc("oversize_messages_total", connection=connection)
        details = " ".join(f"{k}={v}" for k, v in info.items())
        level = logging.INFO if event in ("open", "reconnect_wait", "age_out") else logging.WARNING
        log.log(level, "websocket connection=%s event=%s %s", connection, event, details)

    def _describe_metrics(self) -> None:
        m = self.metrics
        for name, help in (("frames_total", "Websocket frames received"),
                           ("trades_published_total", "Trades acknowledged by Kafka, per symbol"),
                           ("duplicates_total", "Trades dropped as duplicates (id already published)"),
                           ("gaps_total", "Gaps in a symbol's trade ids"),
                           ("gap_trades_total", "Trade ids missing in those gaps"),
                           ("backfilled_trades_total", "Trades fetched from REST into gaps"),
                           ("malformed_frames_total", "Frames that were not valid trades (kept in the dead-letter topic)"),
                           ("dropped_total", "Trades and records dropped: the send queue stayed full, or shutdown (losses)"),
                           ("send_failed_total", "Trades and records Kafka did not take within the delivery timeout (losses)"),
                           ("reconnects_total", "Websocket reconnects"),
                           ("oversize_messages_total", "Websocket messages over WS_MAX_MESSAGE_BYTES (connection closed unread)"),
                           ("sent_total", "Messages handed to the Kafka client"),
                           ("acked_total", "Messages acknowledged by Kafka")):
            m.describe(name, "counter", help)
        m.gauge("queue_depth", self.queue.qsize, "Messages waiting for the Kafka sender")
        m.gauge("unacked", lambda: self._unacked.count,
                "Trades and records handed to Kafka, not yet acknowledged (at most LIVE_MAX_UNACKED)")
        m.gauge("held_trades", self.sequencer.held_count, "Trades held back while their symbol's gap is backfilled")
        m.gauge("connections_open", lambda: sum(c.is_open.is_set() for c in self.connections),
                "Open websocket connections")

    def _stats_loop(self) -> None:
        previous = {}
        while not self._stopping.wait(self.live.stats_interval_s):
            previous = self.log_stats(previous)

    def log_stats(self, previous: dict | None = None, final: bool = False) -> dict:
        per_symbol = self.metrics.by_label("trades_published_total", "symbol")
        interval = self.live.stats_interval_s
        rates = {s: (n - (previous or {}).get(s, 0)) / interval for s, n in per_symbol.items()}
        busiest = ", ".join(f"{s} {r:.1f}/s" for s, r in sorted(rates.items(), key=lambda x: -x[1])[:10])
        q = self.metrics.latency_quantiles()
        m = self.metrics
        log.info("%s published=%d (%s) reconnects=%d gaps=%d duplicates=%d malformed=%d dropped=%d send_failed=%d "
                 "queue_depth=%d held=%d send_latency_ms p50=%.1f p99=%.1f",
                 "final stats:" if final else "stats:", sum(per_symbol.values()), busiest or "none",
                 m.value("reconnects_total"), m.value("gaps_total"), m.value("duplicates_total"),
                 m.value("malformed_frames_total"), m.value("dropped_total"), m.value("send_failed_total"),
                 self.queue.qsize(), self.sequencer.held_count(), 1000 * q.get(0.5, 0), 1000 * q.get(0.99, 0))
        return per_symbol
