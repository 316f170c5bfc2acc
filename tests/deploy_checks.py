"""Shared offline checks of deployment files: image pins and configuration keys against config.py."""
from __future__ import annotations

import dataclasses
import re

import config

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
