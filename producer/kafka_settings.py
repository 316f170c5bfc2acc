"""kafka-python client settings from KafkaConfig: security (SSL, SASL PLAIN/SCRAM) and producer tuning.

One function per client kind, so the producer, the admin client and the tests see the same
mapping. Managed Kafka such as Confluent Cloud needs only environment variables:

    KAFKA_BOOTSTRAP_SERVERS=pkc-xxxx.region.provider.confluent.cloud:9092
    KAFKA_SECURITY_PROTOCOL=SASL_SSL KAFKA_SASL_MECHANISM=PLAIN
    KAFKA_SASL_USERNAME=<api key> KAFKA_SASL_PASSWORD=<api secret>

The password travels only inside the returned dict; `redacted()` is what may be logged.
"""
from __future__ import annotations

from config import KafkaConfig

SECRET_KEYS = ("sasl_plain_password", "ssl_password")


def security_settings(kafka: KafkaConfig) -> dict:
    """Connection and authentication settings shared by every kafka-python client."""
    settings = {"bootstrap_servers": kafka.bootstrap_servers.split(","),
                "security_protocol": kafka.security_protocol}
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        settings["ssl_check_hostname"] = kafka.ssl_check_hostname
        if kafka.ssl_cafile:
            settings["ssl_cafile"] = kafka.ssl_cafile
    if kafka.security_protocol.startswith("SASL_"):
        # kafka-python names the fields sasl_plain_*, but SCRAM uses the same two.
        settings.update(sasl_mechanism=kafka.sasl_mechanism, sasl_plain_username=kafka.sasl_username,
                        sasl_plain_password=kafka.sasl_password)
    return settings


def producer_settings(kafka: KafkaConfig, client_id: str = "trade-producer") -> dict:
    """KafkaProducer settings: durable (acks=all, idempotent, retried until the delivery timeout) and batched."""
    return {
        **security_settings(kafka),
        "client_id": client_id,
        "acks": "all",
        # Idempotence lets retries after a lost acknowledgement (a broker restart) write nothing twice.
        "enable_idempotence": True,
        "retries": 2**31 - 1,     # bounded by delivery_timeout_ms, not by a count
        "delivery_timeout_ms": kafka.delivery_timeout_ms,
        "max_in_flight_requests_per_connection": 5,
        "linger_ms": kafka.linger_ms,
        "batch_size": kafka.batch_size,
        "compression_type": None if kafka.compression == "none" else kafka.compression,
        # kafka-python backs off up to 30 s by default between reconnects; after a broker restart that
        # is 30 s more of trades held in memory. 2 s keeps the recovery quick and the load negligible.
        "reconnect_backoff_max_ms": 2000,
    }


def admin_settings(kafka: KafkaConfig, client_id: str = "trade-producer-admin") -> dict:
    return {**security_settings(kafka), "client_id": client_id}


def redacted(settings: dict) -> dict:
    """The settings with every secret replaced, for logs."""
    return {k: ("***" if k in SECRET_KEYS and v else v) for k, v in settings.items()}
