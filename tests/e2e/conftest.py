"""End-to-end fixtures: the project's own scripts start a real Kafka broker (and a standalone
Flink cluster) on test ports under .run/test-stack, and stop them when the session ends."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import PROJECT_DIR

TEST_RUN_DIR = os.path.join(PROJECT_DIR, ".run", "test-stack")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STACK_ENV = {
    "RUN_DIR": TEST_RUN_DIR,
    "LIB_DIR": os.path.join(PROJECT_DIR, ".run", "lib"),
    "KAFKA_PORT": os.environ.get("TEST_KAFKA_PORT", "19192"),
    "KAFKA_CONTROLLER_PORT": os.environ.get("TEST_KAFKA_CONTROLLER_PORT", "19193"),
    "FLINK_REST_PORT": os.environ.get("TEST_FLINK_REST_PORT", "18081"),
    # The JobManager's RPC port is the cluster's one other fixed port (the TaskManager's RPC, data
    # and blob ports are ephemeral): a free one, so that test sessions side by side do not collide.
    "FLINK_RPC_PORT": os.environ.get("TEST_FLINK_RPC_PORT") or str(free_port()),
    # Each job submitted to a TaskManager keeps about 45 MB of metaspace after it ends
    # (docs/reliability.md); a test session submits up to six to one TaskManager.
    "FLINK_TM_METASPACE": "512m",
}
BOOTSTRAP = f"127.0.0.1:{STACK_ENV['KAFKA_PORT']}"
JOB_TIMEOUT_S = 420


def stack_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(STACK_ENV)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def script(name: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    path = os.path.join(PROJECT_DIR, "deploy", "local", name)
    result = subprocess.run(["bash", path, *args], env=stack_env(), capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{name} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def kafka_broker():
    script("kafka.sh", "start")
    yield BOOTSTRAP
    script("kafka.sh", "stop")


@pytest.fixture(scope="session")
def flink_cluster():
    script("flink-cluster.sh", "start", timeout=240)
    yield f"localhost:{STACK_ENV['FLINK_REST_PORT']}"
    script("flink-cluster.sh", "stop", timeout=120)


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory):
    """A model trained with the project's command on the bundled real trades, in its own registry."""
    from models.registry import load

    from tests.conftest import sample_path
    registry = str(tmp_path_factory.mktemp("registry"))
    run_python(["-m", "models.train", sample_path("ETHUSDT-trades-2023-02-02.csv"),
                sample_path("XRPETH-trades-2019-10-11.csv"), "--registry", registry], stack_env())
    return load(registry)


def planted_input(tmp_path, trained_model, topic_prefix: str, **settings):
    """The planted input built, not yet in Kafka; returns (expected, job env, store path, input file)."""
    from flink_jobs.detectors.iforest import OnnxIsolationForest
    from tests.e2e import planted

    path = str(tmp_path / "planted.jsonl")
    expected = planted.build(path, OnnxIsolationForest.from_registry(trained_model))
    chdb_path = str(tmp_path / "chdb")
    env = stack_env(KAFKA_BOOTSTRAP_SERVERS=BOOTSTRAP, KAFKA_TOPIC=unique(topic_prefix), CHDB_PATH=chdb_path,
                    SINK_BATCH_SIZE=700, IFOREST_BATCH_SIZE=64,
                    MODEL_REGISTRY=os.path.dirname(os.path.dirname(trained_model.onnx_path)),
                    **{**planted.JOB_ENV, **settings})
    return expected, env, chdb_path, path


def replayed_planted_input(tmp_path, trained_model, topic_prefix: str, **settings):
    """The planted input built, replayed into a new topic; returns (expected, job env, store path)."""
    expected, env, chdb_path, path = planted_input(tmp_path, trained_model, topic_prefix, **settings)
    replay = run_python(["-m", "producer", "replay", path, "--create-topic"], env)
    assert "failed 0" in replay.stderr
    # As the producers send them by default: most trades in batch messages (KAFKA_MESSAGE_TRADES)
    published = re.search(r"published (\d+) trades in (\d+) messages", replay.stderr)
    assert published and int(published[2]) < int(published[1]) / 10, replay.stderr[-2000:]
    return expected, env, chdb_path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run_python(args: list[str], env: dict, timeout: float = JOB_TIMEOUT_S) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], cwd=PROJECT_DIR, env=env, capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
                             f"{result.stderr[-8000:]}")
    return result


def read_report(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def wait_until_consumed(topic: str, group: str, timeout_s: float = 180) -> None:
    """Until the job's committed offsets (committed on checkpoints) reach the topic's end."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                committed = admin.list_group_offsets(group).get(group, {})
            except KafkaError as error:  # a new broker creates its offsets topic on first use
                if not getattr(error, "retriable", False):
                    raise
                time.sleep(0.5)
                continue
            if all(tp in committed and committed[tp].offset >= ends[tp] for tp in partitions):
                return
            time.sleep(0.5)
        raise AssertionError(f"job did not consume {topic} to {ends} within {timeout_s}s")
    finally:
        admin.close()
        consumer.close()
