"""deploy/deploy.sh: the commands its dry-run prints, and how it refuses bad arguments."""
from __future__ import annotations

import copy
import json
import os
import shlex
import subprocess

import pytest

from config import PROJECT_DIR
from tests.deploy_checks import K8S_DIR, KUBECTL, rendered

SCRIPT = os.path.join(PROJECT_DIR, "deploy", "deploy.sh")


def deploy(*args, env=None):
    environ = {k: v for k, v in os.environ.items() if k not in ("DRY_RUN", "IMAGE_REPO")}
    environ.update(env or {})
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=30, env=environ)


def printed(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("+ ")]


def test_script_is_strict_bash_with_help():
    with open(SCRIPT) as f:
        assert "set -euo pipefail" in f.read()
    r = deploy("--help")
    assert r.returncode == 0
    for command in ("build", "deploy", "status", "logs", "savepoint-upgrade", "rollback", "--dry-run"):
        assert command in r.stdout


def test_dry_run_build_tags_the_image_from_the_projects_dockerfile_and_pushes_on_request():
    lines = printed(deploy("--dry-run", "build", "0.2.0", "--push", env={"IMAGE_REPO": "registry.example/cad"}))
    assert lines == [
        f"+ docker build -f {PROJECT_DIR}/deploy/docker/Dockerfile -t registry.example/cad:0.2.0 "
        f"-t crypto-anomaly-detector:0.2.0 {PROJECT_DIR}",
        "+ docker push registry.example/cad:0.2.0",
    ]


def test_dry_run_deploy_applies_the_environments_overlay():
    assert printed(deploy("--dry-run", "deploy", "staging")) == [
        f"+ kubectl apply -k {PROJECT_DIR}/deploy/k8s/overlays/staging"]
    assert os.path.isfile(os.path.join(PROJECT_DIR, "deploy/k8s/overlays/staging/kustomization.yaml"))


def test_dry_run_savepoint_upgrade_records_the_old_image_then_changes_job_and_producer():
    lines = printed(deploy("--dry-run", "savepoint-upgrade", "production", "0.3.1", env={"DRY_RUN": "0"}))
    image = "ghcr.io/crypto-anomaly-detector/crypto-anomaly-detector:0.3.1"
    assert lines[0].startswith("+ kubectl -n crypto-prod get flinkdeployment anomaly-detector")
    assert "annotate --overwrite flinkdeployment anomaly-detector" in lines[1]
    assert "previous-image=" in lines[1]
    assert "patch flinkdeployment anomaly-detector --type json" in lines[2] and image in lines[2]
    assert lines[3] == f"+ kubectl -n crypto-prod set image deployment/producer producer={image}"
    assert "wait flinkdeployment anomaly-detector" in lines[4] and "STABLE" in lines[4]
    assert "rollout status deployment/producer" in lines[5]


def json_patched(doc: dict, operations: list[dict]) -> dict:
    """RFC 6902 `test` and `replace`, as the API server applies them: a failed test, or a path that
    does not exist, refuses the whole patch."""
    doc = copy.deepcopy(doc)
    for op in operations:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key = int(last) if isinstance(node, list) else last
        if op["op"] == "test":
            if node[key] != op["value"]:
                raise ValueError(f"test failed at {op['path']}: {node[key]!r}")
        elif op["op"] == "replace":
            node[key]  # noqa: B018 -- must exist
            node[key] = op["value"]
        else:
            raise ValueError(f"unexpected op {op['op']}")
    return doc


def flink_images(fd: dict) -> set[str]:
    spec = fd["spec"]
    templates = [spec["podTemplate"]] + [spec[r]["podTemplate"] for r in ("jobManager", "taskManager")
                                          if "podTemplate" in spec[r]]
    return {spec["image"]} | {c["image"] for t in templates
                              for c in t["spec"].get("containers", []) + t["spec"].get("initContainers", [])
                              if "image" in c}


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (for kustomize) is not installed")
@pytest.mark.parametrize("env, image", [
    ("local", "crypto-anomaly-detector:0.3.1"),
    ("production", "ghcr.io/crypto-anomaly-detector/crypto-anomaly-detector:0.3.1")])
def test_savepoint_upgrade_moves_every_image_of_the_flinkdeployment_training_init_container_included(env, image):
    (line,) = [l for l in printed(deploy("--dry-run", "savepoint-upgrade", env, "0.3.1")) if " patch " in l]
    words = shlex.split(line[2:])
    assert words[words.index("--type") + 1] == "json"
    operations = json.loads(words[words.index("-p") + 1])
    (fd,) = [d for d in rendered(os.path.join(K8S_DIR, "overlays", env)) if d["kind"] == "FlinkDeployment"]
    assert image not in flink_images(fd)
    assert flink_images(json_patched(fd, operations)) == {image}
    # If the init container moved, the patch is refused rather than leaving it on the old image.
    fd["spec"]["jobManager"]["podTemplate"]["spec"]["initContainers"].insert(0, {"name": "other", "image": "x:1.0"})
    with pytest.raises(ValueError, match="test failed"):
        json_patched(fd, operations)


def test_dry_run_rollback_reads_the_recorded_image_and_goes_back_through_the_same_path():
    lines = printed(deploy("rollback", "staging", env={"DRY_RUN": "1"}))
    assert "previous-image" in lines[0] and "get flinkdeployment" in lines[0]
    assert any("patch flinkdeployment" in line and "previous-image" in line for line in lines)
    assert all("crypto-staging" in line for line in lines)


def test_dry_run_status_and_logs_name_the_namespace_and_component():
    assert any("get flinkdeployment anomaly-detector" in l for l in printed(deploy("--dry-run", "status", "local")))
    assert printed(deploy("--dry-run", "logs", "local", "producer")) == [
        "+ kubectl -n crypto-local logs deployment/producer --tail=200"]


@pytest.mark.parametrize("args, message", [
    ((), "usage"),
    (("frobnicate",), "unknown command 'frobnicate'"),
    (("--dry-run", "deploy", "qa"), "unknown environment 'qa'"),
    (("--dry-run", "deploy"), "deploy needs exactly one ENV"),
    (("--dry-run", "build", "latest"), "not a version tag"),
    (("--dry-run", "build", "1.0", "--pussh"), "unknown option '--pussh'"),
    (("--dry-run", "savepoint-upgrade", "staging"), "needs ENV and TAG"),
    (("--dry-run", "logs", "local", "zookeeper"), "unknown component 'zookeeper'"),
    (("--verbose", "status", "local"), "unknown option '--verbose'"),
])
def test_argument_errors_exit_2_with_a_message_and_run_nothing(args, message):
    r = deploy(*args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "+ " not in r.stdout + r.stderr
