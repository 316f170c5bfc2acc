"""Offline checks of deploy/k8s: every manifest of the base and of each overlay (rendered with
`kubectl kustomize`) validates against the Kubernetes 1.37 schemas bundled in kubernetes-validate, and
the FlinkDeployment against the Flink Kubernetes Operator's CRD schema, read from the operator-api jar
that `make setup` fetches with deploy/k8s/maven/operator-api/pom.xml.

The newest operator-api jar Maven Central served here is 1.10.0, whose flinkVersion enum stops at
v1_20; the one deliberate deviation from that schema is adding v2_0..v2_2 to the enum (operator
releases that run Flink 2.2 know them). Everything else is the CRD's schema as published, made strict:
an unknown field where the CRD lists the known ones fails (the API server would prune it silently).
"""
from __future__ import annotations

import copy
import glob
import os
import re
import zipfile

import jsonschema
import kubernetes_validate
import pytest
import yaml

import config
from config import LIB_DIR, PROJECT_DIR
from tests.deploy_checks import (K8S_DIR, KUBECTL, image_pin_problem, rendered, training_command_problems,
                                 unknown_variables)

BASE = os.path.join(K8S_DIR, "base")
OVERLAYS = ("local", "staging", "production")
ROLES = ("jobManager", "taskManager")
FLINK_UID = 9999  # the official Flink image's flink user, which runs the Flink processes
K8S_VERSION = "1.37.0"
CRD_ENTRY = "META-INF/fabric8/flinkdeployments.flink.apache.org-v1.yml"  # an apiextensions.k8s.io/v1 CRD
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl (for kustomize) is not installed")


def base_documents() -> list[dict]:
    """The base's resources read with Python alone (no kustomize), for machines without kubectl."""
    with open(os.path.join(BASE, "kustomization.yaml")) as f:
        resources = yaml.safe_load(f)["resources"]
    docs = []
    for name in resources:
        with open(os.path.join(BASE, name)) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    return docs


def strict(schema):
    """Unknown properties fail wherever the schema lists the known ones and does not keep unknowns."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def flinkdeployment_schema() -> dict:
    jars = glob.glob(os.path.join(LIB_DIR, "operator-api", "flink-kubernetes-operator-api-*.jar"))
    assert jars, "run `make setup`: it fetches the operator-api jar that carries the CRD"
    with zipfile.ZipFile(jars[0]) as jar:
        crd = yaml.safe_load(jar.read(CRD_ENTRY))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    enum = schema["properties"]["spec"]["properties"]["flinkVersion"]["enum"]
    enum += [v for v in ("v2_0", "v2_1", "v2_2") if v not in enum]
    # apiVersion, kind and metadata are the API server's; the CRD's schema speaks for spec.
    schema["properties"]["spec"] = strict(schema["properties"]["spec"])
    return schema


def all_targets() -> list[tuple[str, list[dict]]]:
    targets = [("base (python)", base_documents())]
    if KUBECTL:
        targets += [(name, rendered(os.path.join(K8S_DIR, "overlays", name))) for name in OVERLAYS]
    return targets


@pytest.fixture(scope="module")
def targets():
    return all_targets()


def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def pod_specs(doc) -> list[dict]:
    """Every pod template's spec of a resource: a FlinkDeployment's shared one and its roles' own."""
    if doc["kind"] == "FlinkDeployment":
        spec = doc["spec"]
        templates = [spec.get("podTemplate")] + [spec.get(role, {}).get("podTemplate") for role in ROLES]
        return [t["spec"] for t in templates if t]
    if doc["kind"] == "Deployment":
        return [doc["spec"]["template"]["spec"]]
    return []


def containers(doc) -> list[dict]:
    """Every container of a resource's pods, init containers included."""
    return [c for spec in pod_specs(doc) for c in spec.get("containers", []) + spec.get("initContainers", [])]


def merged(shared, own, path="spec"):
    """A role's pod spec as the operator builds it: the role's template merged into the shared one, objects
    key by key and arrays by position. Position merging mixes unrelated items (a volume into another),
    so this refuses an array both templates set."""
    if isinstance(shared, dict) and isinstance(own, dict):
        return {k: merged(shared[k], own[k], f"{path}.{k}") if k in shared and k in own else own.get(k, shared.get(k))
                for k in {**shared, **own}}
    assert not (isinstance(shared, list) and isinstance(own, list)), f"{path}: set in two pod templates"
    return own


def role_pod(fd, role) -> dict:
    return merged(fd["spec"]["podTemplate"]["spec"], fd["spec"][role].get("podTemplate", {}).get("spec", {}))


def by_name(items) -> dict:
    return {item["name"]: item for item in items}


def test_every_builtin_resource_validates_against_kubernetes_schemas(targets):
    checked = 0
    for name, docs in targets:
        for doc in docs:
            if doc["apiVersion"].startswith("flink.apache.org/"):
                continue
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            checked += 1
    assert checked >= 7
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
              "spec": {"replicas": "one", "selector": {}, "template": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_flinkdeployment_validates_against_the_operator_crd_schema(targets, flinkdeployment_schema):
    for name, docs in targets:
        (fd,) = of_kind(docs, "FlinkDeployment")
        jsonschema.validate(fd, flinkdeployment_schema)
    typo = copy.deepcopy(fd)
    typo["spec"]["job"]["upgradeMod"] = typo["spec"]["job"].pop("upgradeMode")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(typo, flinkdeployment_schema)
    wrong = copy.deepcopy(fd)
    wrong["spec"]["job"]["upgradeMode"] = "savepoints"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, flinkdeployment_schema)


def test_flinkdeployment_runs_the_python_job_statefully_with_ha_and_autoscaler(targets):
    with open(os.path.join(PROJECT_DIR, "requirements.lock")) as f:
        flink = re.search(r"^apache-flink==([\d.]+)$", f.read(), re.M).group(1)
    major, minor, _ = flink.split(".")
    for name, docs in targets:
        (fd,) = of_kind(docs, "FlinkDeployment")
        spec, conf, job = fd["spec"], fd["spec"]["flinkConfiguration"], fd["spec"]["job"]
        assert spec["flinkVersion"] == f"v{major}_{minor}", name
        assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
        assert job["jarURI"] == f"local:///opt/flink/opt/flink-python-{flink}.jar"
        script = job["args"][job["args"].index("-py") + 1]
        assert script.startswith("/opt/app/")
        assert os.path.isfile(os.path.join(PROJECT_DIR, script[len("/opt/app/"):])), script
        assert job["upgradeMode"] == "savepoint" and job["state"] == "running"
        assert conf["high-availability.type"] == "kubernetes"
        for key in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir",
                    "high-availability.storageDir"):
            assert conf[key].startswith("s3://"), (name, key)
        assert conf["state.backend.type"] == "rocksdb"
        assert conf["python.executable"] == "/opt/venv/bin/python"
        max_parallelism = int(conf["pipeline.max-parallelism"])
        assert job["parallelism"] <= int(conf["job.autoscaler.vertex.max-parallelism"]) <= max_parallelism
        assert conf["job.autoscaler.enabled"] == ("false" if name == "local" else "true")
        main = by_name(fd["spec"]["podTemplate"]["spec"]["containers"])["flink-main-container"]
        plugin = next(e["value"] for e in main["env"] if e["name"] == "ENABLE_BUILT_IN_PLUGINS")
        assert plugin == f"flink-s3-fs-presto-{flink}.jar"


def test_producer_probes_hit_healthz_and_readyz_on_the_configured_metrics_port(targets):
    for name, docs in targets:
        (cm,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "detector-config"]
        (producer,) = of_kind(docs, "Deployment")
        (c,) = containers(producer)
        port = next(p["containerPort"] for p in c["ports"] if p["name"] == c["livenessProbe"]["httpGet"]["port"])
        assert port == int(cm["data"]["LIVE_METRICS_PORT"]) != 0
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["command"] == ["python", "-m", "producer", "live", "--create-topic"]
        assert producer["spec"]["replicas"] == 1, "two producers would send every trade twice"


def test_every_key_the_manifests_set_is_a_config_setting(targets):
    for name, docs in targets:
        keys = set()
        for doc in docs:
            if doc["kind"] == "ConfigMap":
                keys |= set(doc["data"])
            if doc["kind"] == "Secret":
                keys |= set(doc.get("stringData", {})) | set(doc.get("data", {}))
            for c in containers(doc):
                keys |= {e["name"] for e in c.get("env", [])}
        assert len(keys) > 10
        assert unknown_variables(keys) == [], name


def test_secrets_hold_placeholders_only_and_sasl_overlays_use_sasl_ssl(targets):
    for name, docs in targets:
        for secret in of_kind(docs, "Secret"):
            assert "data" not in secret
            assert set(secret["stringData"].values()) == {"REPLACE_ME"}, (name, secret["metadata"]["name"])
        (cm,) = of_kind(docs, "ConfigMap")
        if name in ("staging", "production"):
            assert cm["data"]["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
            assert cm["data"]["CLICKHOUSE_URL"].startswith("https://")


def test_images_are_pinned_and_the_job_and_producer_share_one_image(targets):
    for name, docs in targets:
        if name.startswith("base"):
            continue  # the base names the image; kustomize's images: adds registry and tag
        images = {c["image"] for d in docs for c in containers(d) if "image" in c}
        images |= {d["spec"]["image"] for d in of_kind(docs, "FlinkDeployment")}
        assert len(images) == 1, (name, images)
        assert all(image_pin_problem(i) is None for i in images), images


@needs_kubectl
def test_overlays_set_their_own_namespace_and_buckets(targets):
    namespaces, buckets = set(), set()
    for name, docs in targets:
        if name not in OVERLAYS:
            continue
        namespaces |= {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
        assert [d["metadata"]["name"] for d in of_kind(docs, "Namespace")] == [f"crypto-{name[:4]}" if name == "production" else f"crypto-{name}"]
        (fd,) = of_kind(docs, "FlinkDeployment")
        buckets.add(fd["spec"]["flinkConfiguration"]["execution.checkpointing.dir"])
    assert namespaces == {"crypto-local", "crypto-staging", "crypto-prod"}
    assert len(buckets) == 3, "each environment checkpoints into its own bucket"


def app_settings(docs) -> config.AppConfig:
    """The settings the job's pods load: the ConfigMap and the Secrets they take with envFrom."""
    env = {}
    for doc in of_kind(docs, "ConfigMap") + of_kind(docs, "Secret"):
        env.update(doc.get("data", {}), **doc.get("stringData", {}))
    return config.load(env)


def test_every_flink_pod_mounts_the_model_registry_claim_where_model_registry_points(targets):
    for name, docs in targets:
        cfg = app_settings(docs)
        assert "combined" in cfg.detection.methods and cfg.detection.needs_model, name
        path = cfg.detection.model_registry
        (fd,) = of_kind(docs, "FlinkDeployment")
        claims = {d["metadata"]["name"]: d for d in of_kind(docs, "PersistentVolumeClaim")}
        for role in ROLES:
            pod = role_pod(fd, role)
            volumes = by_name(pod["volumes"])
            main = by_name(pod["containers"])["flink-main-container"]
            mounts = {m["mountPath"]: m for m in main.get("volumeMounts", [])}
            assert path in mounts, (name, role, f"nothing mounted at MODEL_REGISTRY={path}")
            claim = volumes[mounts[path]["name"]]["persistentVolumeClaim"]["claimName"]
            assert claim in claims, (name, role, claim)
            assert mounts[path].get("readOnly") is True, "only the training init container writes"
            assert pod["securityContext"]["fsGroup"] == FLINK_UID
        access = claims[claim]["spec"]["accessModes"]
        # JobManager and TaskManagers may run on several nodes; kind/minikube (local) has one.
        assert access == (["ReadWriteOnce"] if name == "local" else ["ReadWriteMany"]), (name, access)


def test_the_jobmanager_trains_a_missing_model_before_it_starts_with_composes_command(targets):
    with open(os.path.join(PROJECT_DIR, "deploy", "docker", "compose.yaml")) as f:
        compose_train = yaml.safe_load(f)["services"]["train"]["command"]
    for name, docs in targets:
        path = app_settings(docs).detection.model_registry
        (fd,) = of_kind(docs, "FlinkDeployment")
        pod = role_pod(fd, "jobManager")
        (init,) = pod["initContainers"]   # init containers finish before the JobManager, which asks for TaskManagers
        assert init["name"] == "train-model"  # deploy/deploy.sh's savepoint-upgrade patches its image by this name
        assert init["command"] == compose_train and training_command_problems(init["command"]) == []
        (mount,) = [m for m in init["volumeMounts"] if m["mountPath"] == path]
        assert not mount.get("readOnly")
        main = by_name(pod["containers"])["flink-main-container"]
        registry_volume = next(m["name"] for m in main["volumeMounts"] if m["mountPath"] == path)
        assert mount["name"] == registry_volume
        assert init["envFrom"] == main["envFrom"], "the same settings as the job (config.load validates them all)"
        assert init["securityContext"]["runAsUser"] == FLINK_UID, "the Flink processes must read what it writes"
        assert "initContainers" not in role_pod(fd, "taskManager")
