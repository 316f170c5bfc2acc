"""The Flink job's Kafka source gets the producer's security settings (one config, one mapping) and
size bounds, down to the properties of the real Java KafkaSource and the Java client's JAAS parser."""
import pytest

import config
from flink_jobs.anomaly_job import connector_jar_urls, kafka_source
from producer.kafka_settings import job_consumer_properties, redacted, security_settings
from tests.conftest import self_signed_certificate

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyflink's own, at import

# A password with the characters JAAS quoting must escape.
SASL = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "crypto-job", "KAFKA_SASL_PASSWORD": 'pa"ss\\word; x=1',
        "KAFKA_SSL_CHECK_HOSTNAME": "false"}


def test_plaintext_sets_only_the_protocol_and_the_fetch_bounds():
    props = job_consumer_properties(config.load({"KAFKA_MAX_MESSAGE_BYTES": "2097152"}).kafka)
    assert props == {"security.protocol": "PLAINTEXT", "max.partition.fetch.bytes": "2097152",
                     "fetch.max.bytes": str(16 * 1024 * 1024)}


@pytest.mark.parametrize("mechanism, module", [
    ("PLAIN", "org.apache.kafka.common.security.plain.PlainLoginModule"),
    ("SCRAM-SHA-256", "org.apache.kafka.common.security.scram.ScramLoginModule"),
    ("SCRAM-SHA-512", "org.apache.kafka.common.security.scram.ScramLoginModule")])
def test_sasl_ssl_maps_to_the_java_client_properties_of_the_same_settings(mechanism, module, tmp_path):
    cafile = tmp_path / "ca.pem"
    cafile.write_text("-----BEGIN CERTIFICATE-----\n")
    kafka = config.load({**SASL, "KAFKA_SASL_MECHANISM": mechanism, "KAFKA_SSL_CAFILE": str(cafile)}).kafka
    props = job_consumer_properties(kafka)
    python = security_settings(kafka)   # what the producer uses
    assert props["security.protocol"] == python["security_protocol"] == "SASL_SSL"
    assert props["sasl.mechanism"] == python["sasl_mechanism"] == mechanism
    assert props["sasl.jaas.config"] == (f'{module} required username="crypto-job" '
                                         f'password="pa\\"ss\\\\word; x=1";')
    assert (props["ssl.truststore.type"], props["ssl.truststore.location"]) == ("PEM", str(cafile))
    assert props["ssl.endpoint.identification.algorithm"] == ""
    assert redacted(props)["sasl.jaas.config"] == "***"


def test_hostname_verification_stays_on_unless_turned_off():
    props = job_consumer_properties(config.load({"KAFKA_SECURITY_PROTOCOL": "SSL"}).kafka)
    assert props["security.protocol"] == "SSL" and "ssl.endpoint.identification.algorithm" not in props
    assert "sasl.jaas.config" not in props and "ssl.truststore.location" not in props


@pytest.fixture(scope="module")
def jvm():
    """PyFlink's JVM with the Kafka connector jars, as the job's client starts it."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.java_gateway import get_gateway

    cfg = config.load({})
    try:
        jars = connector_jar_urls(cfg.job.connector_jars)
    except config.ConfigError as error:
        pytest.fail(f"{error}: the connector jars come with `make setup`")
    StreamExecutionEnvironment.get_execution_environment().add_jars(*jars)
    return get_gateway().jvm


def java_source_properties(j_source) -> dict:
    field = j_source.getClass().getDeclaredField("props")
    field.setAccessible(True)
    props = field.get(j_source)
    return {name: props.getProperty(name) for name in props.stringPropertyNames()}


def test_the_real_kafka_source_carries_them_and_a_java_consumer_accepts_them(jvm, tmp_path):
    cfg = config.load({**SASL, "KAFKA_SSL_CAFILE": self_signed_certificate(tmp_path)[0], "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
                       "JOB_BOUNDED": "true"})
    built = java_source_properties(kafka_source(cfg).get_java_function())
    expected = job_consumer_properties(cfg.kafka)
    assert {k: built.get(k) for k in expected} == expected
    assert built["bootstrap.servers"] == "127.0.0.1:9" and built["commit.offsets.on.checkpoint"] == "true"

    # Kafka's own JAAS parser reads back the user and the password, quotes and backslash included.
    jaas = jvm.org.apache.kafka.common.security.JaasConfig("KafkaClient", built["sasl.jaas.config"])
    options = jaas.getAppConfigurationEntry("KafkaClient")[0].getOptions()
    assert (options.get("username"), options.get("password")) == ("crypto-job", 'pa"ss\\word; x=1')

    # A Java consumer built from them logs in (SCRAM) and loads the PEM truststore; it connects lazily.
    props = jvm.java.util.Properties()
    for name, value in {**built, "key.deserializer": "org.apache.kafka.common.serialization.ByteArrayDeserializer",
                        "value.deserializer": "org.apache.kafka.common.serialization.ByteArrayDeserializer"}.items():
        props.setProperty(name, value)
    consumer = jvm.org.apache.kafka.clients.consumer.KafkaConsumer(props)
    consumer.close()
