"""Kafka security and producer settings from the environment, down to the kafka-python client they build."""
import logging

import pytest
from kafka import KafkaProducer

import config
from config import ConfigError
from producer.kafka_settings import admin_settings, producer_settings, redacted
from producer.metrics import Metrics

CONFLUENT = {"KAFKA_BOOTSTRAP_SERVERS": "pkc-1.eu-west-1.aws.confluent.cloud:9092,pkc-2.example:9092",
             "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN",
             "KAFKA_SASL_USERNAME": "APIKEY123", "KAFKA_SASL_PASSWORD": "s3cr3t-api-secret"}


@pytest.mark.parametrize("protocol, mechanism", [("SASL_SSL", "PLAIN"), ("SASL_SSL", "SCRAM-SHA-256"),
                                                  ("SASL_PLAINTEXT", "SCRAM-SHA-512")])
def test_sasl_settings_reach_the_kafka_python_producer(protocol, mechanism, tmp_path):
    cafile = tmp_path / "ca.pem"
    cafile.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {**CONFLUENT, "KAFKA_SECURITY_PROTOCOL": protocol, "KAFKA_SASL_MECHANISM": mechanism,
           "KAFKA_SSL_CAFILE": str(cafile)}
    settings = producer_settings(config.load(env).kafka)
    # api_version given: the client is built without contacting the (unreachable) brokers
    producer = KafkaProducer(**{**settings, "ssl_cafile": None}, api_version=(3, 7))
    try:
        built = producer.config
        assert (built["security_protocol"], built["sasl_mechanism"]) == (protocol, mechanism)
        assert (built["sasl_plain_username"], built["sasl_plain_password"]) == ("APIKEY123", "s3cr3t-api-secret")
        assert built["bootstrap_servers"] == ["pkc-1.eu-west-1.aws.confluent.cloud:9092", "pkc-2.example:9092"]
        assert (built["acks"], built["enable_idempotence"], built["compression_type"]) == (-1, True, "lz4")
        assert (built["linger_ms"], built["batch_size"]) == (20, 256 * 1024)
    finally:
        producer.close(timeout=1)
    assert settings.get("ssl_cafile") == (str(cafile) if protocol == "SASL_SSL" else None)
    assert admin_settings(config.load(env).kafka)["sasl_mechanism"] == mechanism


def test_plaintext_sends_no_credentials_and_batching_is_configurable():
    settings = producer_settings(config.load({"KAFKA_LINGER_MS": "50", "KAFKA_COMPRESSION": "none"}).kafka)
    assert settings["security_protocol"] == "PLAINTEXT" and "sasl_mechanism" not in settings
    assert (settings["linger_ms"], settings["compression_type"]) == (50, None)


def test_the_sasl_password_is_never_in_reprs_or_logs(caplog):
    cfg = config.load(CONFLUENT)
    assert "s3cr3t-api-secret" not in repr(cfg)
    shown = redacted(producer_settings(cfg.kafka))
    assert shown["sasl_plain_password"] == "***" and shown["sasl_plain_username"] == "APIKEY123"
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("kafka client settings: %s", shown)
    assert "s3cr3t" not in caplog.text


@pytest.mark.parametrize("env, variable", [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SECURITY_PROTOCOL"),
    ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
    ({"KAFKA_SSL_CAFILE": "/no/such/ca.pem"}, "KAFKA_SSL_CAFILE"),
    ({"KAFKA_COMPRESSION": "brotli"}, "KAFKA_COMPRESSION"),
    ({"BINANCE_WS_URL": "https://stream.binance.com"}, "BINANCE_WS_URL"),
    ({"WS_MAX_STREAMS_PER_CONNECTION": "1025"}, "WS_MAX_STREAMS_PER_CONNECTION"),
    ({"WS_PING_INTERVAL_S": "5", "WS_PING_TIMEOUT_S": "10"}, "WS_PING_INTERVAL_S"),
    ({"WS_RECONNECT_INITIAL_S": "10", "WS_RECONNECT_MAX_S": "1"}, "WS_RECONNECT_MAX_S"),
])
def test_bad_producer_settings_fail_at_start_with_the_variable_named(env, variable):
    with pytest.raises(ConfigError, match=variable):
        config.load(env)


def test_metrics_render_in_prometheus_text_format():
    m = Metrics()
    m.describe("gaps_total", "counter", "Gaps")
    m.inc("gaps_total", symbol="ETHUSDT")
    m.inc("gaps_total", 2, symbol='O"DD')
    m.gauge("queue_depth", lambda: 7, "Queue")
    m.observe_latency(0.004)
    text = m.render()
    assert "# TYPE producer_gaps_total counter" in text
    assert 'producer_gaps_total{symbol="ETHUSDT"} 1' in text and 'producer_gaps_total{symbol="O\\"DD"} 2' in text
    assert "producer_queue_depth 7" in text and "producer_send_latency_seconds_count 1" in text
    assert m.value("gaps_total") == 3 and m.by_label("gaps_total", "symbol") == {"ETHUSDT": 1, 'O"DD': 2}
