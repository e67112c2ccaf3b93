"""deploy/k8s: every rendered object is valid Kubernetes, and the manifests agree with the code they run.

Rendered by tests/deploy/kustomize.py (and compared with `kubectl kustomize` where kubectl is
installed), validated with kubernetes-validate's offline schemas in strict mode (unknown fields
are errors) for the oldest and newest Kubernetes releases we claim, then checked against notifq
itself: probe paths are routes the API serves, variables are settings, secrets are files the
settings read, labels and selectors line up, and grace periods cover the drains.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from notifq.api.routes import OPERATIONS
from notifq.cli import GRACEFUL_SHUTDOWN_SECONDS
from notifq.settings import ENV_VARS, FILE_VARS, Settings
from notifq.worker.main import CANCEL_WAIT_SECONDS
from tests.deploy.kustomize import render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE, AUTOSCALING = K8S / "base", K8S / "overlays" / "autoscaling"
KUSTOMIZATIONS = {"base": BASE, "autoscaling": AUTOSCALING}
# Validated against the oldest release we support and a recent one (schemas ship with kubernetes-validate).
K8S_VERSIONS = ("1.30", "1.33")
MARGIN_SECONDS = 5  # on top of every wait a stop is made of: closing pools, the kubelet's own delays
IMAGE_UID = 10001  # docker/Dockerfile: USER 10001:10001
# Variables that are not notifq settings but are read by what notifq uses (boto3's credential chain).
OTHER_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"}

Object = dict[str, Any]


@pytest.fixture(autouse=True)
def clean() -> None:
    """Files only: no PostgreSQL or Redis to empty (overrides conftest's autouse `clean`)."""


def _objects(name: str) -> list[Object]:
    return render(KUSTOMIZATIONS[name])


def _one(objects: list[Object], kind: str, name: str) -> Object:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _pod_spec(obj: Object) -> Object:
    spec: Object = obj["spec"]["template"]["spec"]
    return spec


def _workloads(objects: list[Object]) -> list[Object]:
    return [o for o in objects if o["kind"] in ("Deployment", "Job")]


def _env(container: Object) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_rendered_object_is_valid_kubernetes(name: str, version: str) -> None:
    """Strict schemas: a misspelt field (`readinesProbe`) fails as surely as a wrong type."""
    objects = _objects(name)
    assert objects
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = "/".join(str(p) for p in error.path)
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']} at {where}: {error.message}")


def _kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def _key(obj: Object) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


@pytest.mark.skipif(_kustomize_command() is None, reason="neither kustomize nor kubectl is installed")
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_small_renderer_agrees_with_kustomize(name: str) -> None:
    """The real kustomize, where installed, renders the same objects (so the checks above check what ships)."""
    command = _kustomize_command()
    assert command is not None
    built = subprocess.run([*command, str(KUSTOMIZATIONS[name])], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    theirs = sorted((o for o in yaml.safe_load_all(built.stdout) if o), key=_key)
    ours = sorted(_objects(name), key=_key)
    assert [_key(o) for o in ours] == [_key(o) for o in theirs]
    for mine, real in zip(ours, theirs, strict=True):
        assert mine == real, _key(mine)


def test_the_overlay_names_its_namespace_image_and_leaves_replicas_to_the_autoscalers() -> None:
    objects = _objects("autoscaling")
    assert {o["metadata"].get("namespace") for o in objects} == {"notifq"}
    images = {c["image"] for o in _workloads(objects) for c in _pod_spec(o)["containers"]}
    assert images == {"registry.example.com/notifq:0.1.0"}
    scaled = {o["spec"]["scaleTargetRef"]["name"] for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    assert scaled == {"notifq-api", "notifq-worker"}
    for name in scaled:
        deployment = _one(objects, "Deployment", name)
        assert "replicas" not in deployment["spec"], f"{name}: the HPA owns its replica count"
        assert _one(_objects("base"), "Deployment", name)["spec"]["replicas"] >= 2


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_probes_ask_routes_the_api_serves(name: str) -> None:
    """Liveness is /health (the process answers), readiness /ready (PostgreSQL and Redis answer)."""
    served = {op.path for op in OPERATIONS if op.method == "GET" and op.public}
    api = _pod_spec(_one(_objects(name), "Deployment", "notifq-api"))["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert ports == {"http": Settings().port}
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert api["startupProbe"]["httpGet"]["path"] == "/health"
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = api[probe]["httpGet"]
        assert get["path"] in served and get["port"] in ports, (probe, get)
    # /ready's own checks time out after 2 s: the probe must wait longer, or a slow answer is a failure.
    assert api["readinessProbe"]["timeoutSeconds"] > 2
    worker = _pod_spec(_one(_objects(name), "Deployment", "notifq-worker"))["containers"][0]
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(worker), "workers serve no HTTP"


def test_config_map_and_environment_name_real_settings() -> None:
    """A misspelt variable would be ignored silently by notifq: every one must be a setting (or boto3's)."""
    objects = _objects("base")
    known = set(ENV_VARS.values()) | set(FILE_VARS.values()) | OTHER_VARIABLES
    config = _one(objects, "ConfigMap", "notifq-config")
    assert set(config["data"]) <= known, set(config["data"]) - known
    secrets = {ENV_VARS[n] for n in FILE_VARS} | set(FILE_VARS.values())
    assert not set(config["data"]) & secrets, "secrets (and the URLs, which hold passwords) go in the Secret"
    for workload in _workloads(objects):
        for container in _pod_spec(workload)["containers"]:
            assert set(_env(container)) <= known, (workload["metadata"]["name"], set(_env(container)) - known)
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] == "notifq-config"
    for name, value in config["data"].items():
        assert isinstance(value, str), f"{name}: ConfigMap values are strings"


def test_secrets_are_files_the_settings_read() -> None:
    """Each `*_FILE` names a file in the mounted Secret; the Secret itself is the operator's (not in git)."""
    objects = _objects("base")
    assert not [o for o in objects if o["kind"] == "Secret"], "no real Secret in the manifests"
    for workload in _workloads(objects):
        pod = _pod_spec(workload)
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            files = {k: v for k, v in _env(container).items() if k in FILE_VARS.values()}
            assert "DATABASE_URL_FILE" in files, workload["metadata"]["name"]
            for variable, path in files.items():
                directory, _, key = path.rpartition("/")
                volume = mounts.get(directory)
                assert volume is not None and volume["secret"]["secretName"] == "notifq-secrets", (variable, path)
                items = volume["secret"].get("items")
                assert items is None or key in {i["path"] for i in items}, (variable, key)
                assert variable.removesuffix("_FILE") not in _env(container), f"{variable} and its value both set"
    api = _pod_spec(_one(objects, "Deployment", "notifq-api"))["containers"][0]
    assert {"NOTIFQ_JWT_SECRET_FILE", "DATABASE_URL_FILE", "REDIS_URL_FILE"} <= set(_env(api))


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_labels_selectors_and_budgets_line_up(name: str) -> None:
    """Each Deployment selects its own pods only; the Service reaches the API; each budget guards one Deployment."""
    objects = _objects(name)
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    pod_labels = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in deployments}

    def selected(selector: dict[str, str]) -> set[str]:
        return {n for n, labels in pod_labels.items() if selector.items() <= labels.items()}

    for d in deployments:
        assert selected(d["spec"]["selector"]["matchLabels"]) == {d["metadata"]["name"]}
    service = _one(objects, "Service", "notifq-api")
    assert selected(service["spec"]["selector"]) == {"notifq-api"}
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert sorted(b for p in budgets for b in selected(p["spec"]["selector"]["matchLabels"])) == [
        "notifq-api", "notifq-worker"]  # fmt: skip
    for hpa in (o for o in objects if o["kind"] == "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in pod_labels
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_grace_periods_cover_the_drains() -> None:
    """A pod killed before its drain ends would leave sends to the lease: the periods come from the code's waits."""
    objects = _objects("base")
    config = _one(objects, "ConfigMap", "notifq-config")["data"]
    drain = float(config.get("NOTIFQ_WORKER_DRAIN_SECONDS", Settings().worker_drain_seconds))
    worker = _pod_spec(_one(objects, "Deployment", "notifq-worker"))
    assert "NOTIFQ_WORKER_DRAIN_SECONDS" not in _env(worker["containers"][0])
    assert worker["terminationGracePeriodSeconds"] >= drain + CANCEL_WAIT_SECONDS + MARGIN_SECONDS
    api = _pod_spec(_one(objects, "Deployment", "notifq-api"))
    pre_stop = api["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert api["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + GRACEFUL_SHUTDOWN_SECONDS + MARGIN_SECONDS


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_container_is_bounded_and_unprivileged(name: str) -> None:
    for workload in _workloads(_objects(name)):
        pod = _pod_spec(workload)
        who = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == IMAGE_UID
        assert pod.get("automountServiceAccountToken") is False, who
        for container in pod["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            # A read-only root still needs a writable /tmp (multiprocessing's spawn in `notifq api`).
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"]), who
    api = _one(_objects(name), "Deployment", "notifq-api")
    container = _pod_spec(api)["containers"][0]
    # A CPU limit is a quota, which NOTIFQ_API_PROCESSES=0 (one per CPU in the affinity) does not see.
    assert int(_env(container)["NOTIFQ_API_PROCESSES"]) <= _cpus(container["resources"]["limits"]["cpu"])


def _cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_the_autoscaled_metric_is_one_the_api_serves() -> None:
    """The HPA's external metric, the adapter's rule for it, and the gauge `/metrics` writes share one name."""
    hpa = _one(_objects("autoscaling"), "HorizontalPodAutoscaler", "notifq-worker")
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]["name"]
    adapter = yaml.safe_load((AUTOSCALING / "prometheus-adapter-values.yaml").read_text())
    rules = {r["name"]["as"]: r for r in adapter["rules"]["external"]}
    assert metric in rules and rules[metric]["seriesQuery"].startswith(metric + "{")
    assert re.match(r"max\(", rules[metric]["metricsQuery"]), "every API pod reports the same figure: max, not sum"
    source = (ROOT / "src" / "notifq" / "api" / "ops_routes.py").read_text()
    assert re.search(rf'_gauge\(\s*"{metric}"', source), f"/metrics does not write a gauge {metric}"


def test_the_migration_job_runs_notifq_migrate_once() -> None:
    job = _one(_objects("base"), "Job", "notifq-migrate")
    pod = _pod_spec(job)
    assert pod["containers"][0]["command"] == ["notifq", "migrate"]
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] >= 1
    commands = {o["metadata"]["name"]: _pod_spec(o)["containers"][0]["command"] for o in _workloads(_objects("base"))}
    assert commands == {"notifq-api": ["notifq", "api"], "notifq-worker": ["notifq", "worker"],
                        "notifq-migrate": ["notifq", "migrate"]}  # fmt: skip
