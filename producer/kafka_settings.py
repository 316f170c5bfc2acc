"""Kafka client settings from KafkaConfig: security (SSL, SASL PLAIN/SCRAM), size bounds, producer tuning.

One function per client kind, so the producer, the admin client, the Flink job's KafkaSource (Java
client property names, derived from the same security settings) and the tests see the same
mapping. Managed Kafka such as Confluent Cloud needs only environment variables:

    KAFKA_BOOTSTRAP_SERVERS=pkc-xxxx.region.provider.confluent.cloud:9092
    KAFKA_SECURITY_PROTOCOL=SASL_SSL KAFKA_SASL_MECHANISM=PLAIN
    KAFKA_SASL_USERNAME=<api key> KAFKA_SASL_PASSWORD=<api secret>

The password travels only inside the returned dict; `redacted()` is what may be logged.
"""
from __future__ import annotations

from config import KafkaConfig

SECRET_KEYS = ("sasl_plain_password", "ssl_password", "sasl.jaas.config")
LOGIN_MODULES = {"PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
                 "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
                 "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule"}


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
        "max_request_size": kafka.max_message_bytes,
        # kafka-python backs off up to 30 s by default between reconnects; after a broker restart that
        # is 30 s more of trades held in memory. 2 s keeps the recovery quick and the load negligible.
        "reconnect_backoff_max_ms": 2000,
    }


def topic_configs(kafka: KafkaConfig) -> dict[str, str]:
    """Settings of the topics the producer creates."""
    return {"retention.ms": str(kafka.retention_ms), "max.message.bytes": str(kafka.max_message_bytes)}


def _jaas_quoted(value: str) -> str:
    """A JAAS option value in double quotes (Kafka's JaasConfig reads it with a StreamTokenizer)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def java_security_properties(kafka: KafkaConfig) -> dict[str, str]:
    """security_settings() as Java Kafka client properties, for the Flink job's KafkaSource."""
    python = security_settings(kafka)
    props = {"security.protocol": python["security_protocol"]}
    if python.get("ssl_check_hostname") is False:
        props["ssl.endpoint.identification.algorithm"] = ""   # Java checks the host name unless this is empty
    if python.get("ssl_cafile"):
        props.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": python["ssl_cafile"]})
    if "sasl_mechanism" in python:
        mechanism = python["sasl_mechanism"]
        props["sasl.mechanism"] = mechanism
        props["sasl.jaas.config"] = (f"{LOGIN_MODULES[mechanism]} required "
                                     f"username={_jaas_quoted(python['sasl_plain_username'])} "
                                     f"password={_jaas_quoted(python['sasl_plain_password'])};")
    return props


def job_consumer_properties(kafka: KafkaConfig) -> dict[str, str]:
    """Properties of the Flink job's KafkaSource: security, and how much one fetch may bring. A
    record larger than max.partition.fetch.bytes is still returned (Kafka's rule, so a consumer
    never stalls); the hard bound on a record is the topic's max.message.bytes."""
    return {**java_security_properties(kafka), "max.partition.fetch.bytes": str(kafka.max_message_bytes),
            "fetch.max.bytes": str(kafka.fetch_max_bytes)}


def admin_settings(kafka: KafkaConfig, client_id: str = "trade-producer-admin") -> dict:
    return {**security_settings(kafka), "client_id": client_id}


def redacted(settings: dict) -> dict:
    """The settings with every secret replaced, for logs."""
    return {k: ("***" if k in SECRET_KEYS and v else v) for k, v in settings.items()}
