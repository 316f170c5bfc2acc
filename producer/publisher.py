"""Publishing messages to Kafka with kafka-python: keyed by symbol, acks=all, idempotent, counted.

Replay and the live producer share this class; client settings (security, batching, compression)
come from producer/kafka_settings.py."""
from __future__ import annotations

import logging
import socket
import time
from collections import Counter

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

from config import KafkaConfig
from producer.kafka_settings import admin_settings, producer_settings, topic_configs

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    pass


def create_topic(kafka: KafkaConfig, recreate: bool = False, timeout_s: float = 30.0,
                 topic: str | None = None) -> None:
    """Creates the topic (default KAFKA_TOPIC) with KAFKA_TOPIC_PARTITIONS partitions, the configured
    replication factor and retention; with recreate, deletes it first."""
    topic = topic or kafka.topic
    admin = KafkaAdminClient(**admin_settings(kafka))
    try:
        if recreate:
            try:
                admin.delete_topics([topic])
                log.info("deleted topic %s", topic)
            except UnknownTopicOrPartitionError:
                pass
        deadline = time.monotonic() + timeout_s
        new_topic = NewTopic(topic, kafka.partitions, kafka.replication_factor,
                             topic_configs=topic_configs(kafka))
        while True:
            try:
                admin.create_topics([new_topic])
                log.info("created topic %s with %d partitions, replication %d, retention.ms %d, max.message.bytes %d",
                         topic, kafka.partitions, kafka.replication_factor, kafka.retention_ms, kafka.max_message_bytes)
                return
            except TopicAlreadyExistsError:
                if not recreate:
                    log.info("topic %s exists", topic)
                    return
                # A deleted topic lingers for a moment in KRaft; wait for it to go.
                if time.monotonic() > deadline:
                    raise PublishError(f"topic {topic} still exists {timeout_s:.0f}s after deletion")
                time.sleep(0.2)
    finally:
        admin.close()


class Publisher:
    """Sends messages keyed by symbol and keeps count of what was acknowledged and what failed."""

    def __init__(self, kafka: KafkaConfig, client_id: str = "trade-producer"):
        self.topic = kafka.topic
        self.bootstrap_servers = [b.strip() for b in kafka.bootstrap_servers.split(",") if b.strip()]
        self.producer = KafkaProducer(**producer_settings(kafka, client_id))
        self.sent = Counter()   # trades per symbol
        self.messages = 0
        self.acked = 0          # trades acknowledged
        self.failed = 0         # trades in messages Kafka refused
        self.first_error: Exception | None = None

    def send(self, symbol: str | None, message: str | bytes, topic: str | None = None,
             headers: list[tuple[str, bytes]] | None = None, trades: int = 1):
        """Hands one message, holding `trades` trades (a batch message more than one), to the
        producer (blocks while its buffer is full); returns the future. Counts are in trades."""
        key = symbol.encode() if symbol else None
        value = message.encode("utf-8") if isinstance(message, str) else message
        future = self.producer.send(topic or self.topic, key=key, value=value, headers=headers)
        future.add_callback(self._on_ack, trades).add_errback(self._on_error, trades)
        self.sent[symbol or "<no symbol>"] += trades
        self.messages += 1
        return future

    def reachable(self, timeout_s: float = 1.0) -> bool:
        """Whether a bootstrap broker accepts a TCP connection (readiness). A plain connect, because
        kafka-python exposes no public 'connected' state, and a probe must not send requests."""
        for server in self.bootstrap_servers:
            host, _, port = server.rpartition(":")
            try:
                with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                    return True
            except (OSError, ValueError):
                continue
        return False

    def _on_ack(self, trades: int, _metadata) -> None:
        self.acked += trades

    def _on_error(self, trades: int, error: Exception) -> None:
        self.failed += trades
        if self.first_error is None:
            self.first_error = error
            log.error("Kafka rejected a message: %s", error)

    def close(self, timeout_s: float = 60.0) -> None:
        """Waits for every outstanding acknowledgement, then closes."""
        try:
            self.producer.flush(timeout=timeout_s)
        except KafkaError as error:
            raise PublishError(f"flush failed: {error}") from error
        finally:
            self.producer.close(timeout=timeout_s)
