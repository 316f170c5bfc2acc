"""Shared offline checks of deployment files: image pins, configuration keys against config.py, the
files the job image carries, the training step and the read-only ClickHouse user."""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess

import yaml

import config

DOCKERFILE = os.path.join(config.PROJECT_DIR, "deploy", "docker", "Dockerfile")
K8S_DIR = os.path.join(config.PROJECT_DIR, "deploy", "k8s")
KUBECTL = shutil.which("kubectl")
# The one command that puts a model into the registry in every deployment (Compose `train`, the
# Kubernetes JobManager's init container): train only when no usable model is there.
TRAIN_ENTRY_POINT = ["python", "-m", "models.train", "--if-missing"]

# Variables set in compose/manifests that are not settings of config.py, each with its reason.
NON_APP_VARIABLES = {
    "FLINK_PROPERTIES": "the official Flink image appends it to the Flink configuration",
    "GF_INSTALL_PLUGINS": "Grafana: plugins to install at start",
    "GF_SECURITY_ADMIN_PASSWORD": "Grafana: admin password",
    "CLICKHOUSE_DB": "clickhouse-server image: database created at first start",
    "CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT": "clickhouse-server image: the user may manage users",
    "RUN_DIR": "config.py: base of the default paths (not a setting)",
    "PYTHONPATH": "Python's module path",
    "ENABLE_BUILT_IN_PLUGINS": "the official Flink image enables these plugins (the S3 file system) at start",
}
# The apache/kafka image reads KAFKA_<broker property>; those name broker settings, not the app's.
THIRD_PARTY_PREFIXES = {"apache/kafka": "KAFKA_"}

TAG = re.compile(r"^(?P<repo>[a-z0-9./_-]+):(?P<tag>[A-Za-z0-9_.-]+)(@sha256:[0-9a-f]{64})?$")


def config_env_names() -> set[str]:
    return {f.metadata["env"] for cls in config.SECTIONS.values() for f in dataclasses.fields(cls)}


def image_pin_problem(image: str) -> str | None:
    """None when the image names an exact version; else what is wrong with it."""
    m = TAG.match(image)
    if not m:
        return f"{image!r} has no tag"
    tag = m.group("tag")
    if tag == "latest" or not re.search(r"\d+\.\d+", tag):
        return f"{image!r}: tag {tag!r} is not a version"
    return None


def unknown_variables(names, image: str = "") -> list[str]:
    known = config_env_names() | set(NON_APP_VARIABLES)
    prefix = next((p for repo, p in THIRD_PARTY_PREFIXES.items() if image.startswith(repo + ":")), None)
    return sorted(n for n in names if n not in known and not (prefix and n.startswith(prefix)))


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def image_instructions() -> list[tuple[str, str]]:
    with open(DOCKERFILE) as f:
        return dockerfile_instructions(f.read())


def clone_path_in_image(image_path: str) -> str | None:
    """The file of the clone that the job image's COPY lines put at `image_path`; None if none does."""
    for word, args in image_instructions():
        words = shlex.split(args)
        if word != "COPY" or words[0].startswith("--from"):
            continue
        *sources, target = words
        for source in sources:
            if target.endswith("/") and source.endswith("/") and image_path.startswith(target):
                return os.path.join(config.PROJECT_DIR, source, image_path[len(target):])
            if image_path == target:
                return os.path.join(config.PROJECT_DIR, source)
    return None


def image_env() -> dict[str, str]:
    """The ENV the job image sets (KEY=VALUE form)."""
    env = {}
    for word, args in image_instructions():
        if word == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    return env


def training_command_problems(command: list[str]) -> list[str]:
    """What is wrong with a deployment's training step: not the shared entry point, or training files
    the image does not carry (deployments read no data from outside the image)."""
    if command[:len(TRAIN_ENTRY_POINT)] != TRAIN_ENTRY_POINT:
        return [f"{command}: not {' '.join(TRAIN_ENTRY_POINT)}"]
    files = command[len(TRAIN_ENTRY_POINT):]
    if not files or any(f.startswith("-") for f in files):
        return [f"{command}: give the training files only"]
    return [f"{f}: no COPY of the Dockerfile puts a file of the clone there" for f in files
            if not ((local := clone_path_in_image(f)) and os.path.isfile(local))]


def read_only_users() -> set[str]:
    """The users sql/users/ creates with a settings profile of readonly = 1 (what Grafana may use)."""
    from flink_jobs.migrate import render_users

    statements = [" ".join(s.split()) for s in render_users("crypto", "job-secret", "grafana-secret")]
    profiles = {m.group(1) for s in statements
                if (m := re.match(r"CREATE SETTINGS PROFILE (?:IF NOT EXISTS )?(\w+) SETTINGS .*\breadonly = 1\b", s))}
    users = {m.group(1): m.group(2) for s in statements
             if (m := re.match(r"CREATE USER (?:OR REPLACE )?(\w+) .*SETTINGS PROFILE '(\w+)'", s))}
    return {user for user, profile in users.items() if profile in profiles}


def rendered(target: str) -> list[dict]:
    """The objects `kubectl kustomize` makes of a kustomization folder."""
    out = subprocess.run([KUBECTL, "kustomize", target], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]
