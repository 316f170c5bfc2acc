"""Publishing trade messages to Kafka with kafka-python: keyed by symbol, acks=all, counted."""
from __future__ import annotations

import logging
import time
from collections import Counter

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

from config import KafkaConfig

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    pass


def create_topic(kafka: KafkaConfig, recreate: bool = False, timeout_s: float = 30.0) -> None:
    """Creates the topic with KAFKA_TOPIC_PARTITIONS partitions; with recreate, deletes it first."""
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, client_id="trade-producer-admin")
    try:
        if recreate:
            try:
                admin.delete_topics([kafka.topic])
                log.info("deleted topic %s", kafka.topic)
            except UnknownTopicOrPartitionError:
                pass
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                admin.create_topics([NewTopic(kafka.topic, kafka.partitions, 1)])
                log.info("created topic %s with %d partitions", kafka.topic, kafka.partitions)
                return
            except TopicAlreadyExistsError:
                if not recreate:
                    log.info("topic %s exists", kafka.topic)
                    return
                # A deleted topic lingers for a moment in KRaft; wait for it to go.
                if time.monotonic() > deadline:
                    raise PublishError(f"topic {kafka.topic} still exists {timeout_s:.0f}s after deletion")
                time.sleep(0.2)
    finally:
        admin.close()


class Publisher:
    """Sends messages keyed by symbol and keeps count of what was acknowledged and what failed."""

    def __init__(self, kafka: KafkaConfig):
        self.topic = kafka.topic
        self.producer = KafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers, acks="all", retries=5, linger_ms=20,
            batch_size=256 * 1024, max_in_flight_requests_per_connection=1,
            client_id="trade-producer")
        self.sent = Counter()
        self.acked = 0
        self.failed = 0
        self.first_error: Exception | None = None

    def send(self, symbol: str | None, message: str) -> None:
        key = symbol.encode() if symbol else None
        future = self.producer.send(self.topic, key=key, value=message.encode("utf-8"))
        future.add_callback(self._on_ack).add_errback(self._on_error)
        self.sent[symbol or "<no symbol>"] += 1

    def _on_ack(self, _metadata) -> None:
        self.acked += 1

    def _on_error(self, error: Exception) -> None:
        self.failed += 1
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
