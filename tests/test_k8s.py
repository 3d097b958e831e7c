"""deploy/k8s (kustomize base + overlays) and the compose file's one-shot migration.

Each overlay is rendered with `kubectl kustomize` (skipped, saying why, where kubectl is
absent) and every object is validated strictly (unknown fields refused) against the
Kubernetes schema of K8S_VERSION shipped inside kubernetes-validate (no network). The
contract tests hold the manifests to the code: probes against the app's own health routes,
Job and CronJob commands against the `ocupredict` argparse parser, every setting key against
Settings and .env.example, selectors against pod labels.
"""

from __future__ import annotations

import copy
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from app import cli
from app.api.body_limit import MULTIPART_OVERHEAD
from app.config import ConfigError, Settings
from app.main import create_app
from tests.support.harness import ROOT

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
K8S_VERSION = "1.31"  # the oldest Kubernetes the manifests are written for
SECRET_NAME = "ocupredict-secrets"
POD_KINDS = {"Deployment", "Job", "CronJob"}
MIB = 1024 * 1024
# After uvicorn's graceful shutdown (SHUTDOWN_TIMEOUT_SECONDS) the lifespan closes the
# classifier (queued images run first), mailer, store and engine: room for that.
LIFESPAN_CLOSE_SECONDS = 10

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed: the overlays cannot be rendered here"
)

Obj = dict[str, Any]


# --------------------------------------------------------------------------- helpers


def render(overlay: Path) -> list[Obj]:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def pod_template(obj: Obj) -> Obj:
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"])
    return dict(obj["spec"]["template"])


def pod_templates(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for obj in objects:
        if obj["kind"] in POD_KINDS:
            yield obj, pod_template(obj)


def all_containers(template: Obj) -> list[Obj]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def api_container(objects: list[Obj]) -> Obj:
    containers = pod_template(one(objects, "Deployment"))["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def config_data(objects: list[Obj]) -> dict[str, str]:
    return dict(one(objects, "ConfigMap")["data"])


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against labels."""
    if not selector:
        return False  # in a PDB, HPA target or Service an empty selector is a mistake
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def cpu_cores(quantity: str | int | float) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def env_file_keys(path: Path, *, commented_too: bool = False) -> dict[str, str]:
    pattern = r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$" if commented_too else r"^([A-Z][A-Z0-9_]*)=(.*)$"
    return {
        m.group(1): m.group(2).strip()
        for m in re.finditer(pattern, path.read_text(encoding="utf-8"), re.MULTILINE)
    }


def documented_settings() -> set[str]:
    return set(env_file_keys(ROOT / ".env.example", commented_too=True))


def secret_example() -> dict[str, str]:
    return env_file_keys(K8S / "secrets.env.example")


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def secret_settings() -> set[str]:
    """Settings typed SecretStr, and the database URL (it carries the password)."""
    names = {"DATABASE_URL"}
    for name, field in Settings.model_fields.items():
        if "SecretStr" in str(field.annotation) or field.annotation is SecretStr:
            names.add(name.upper())
    return names


def body_size_bytes(ingress: Obj) -> int:
    return int(ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"])


def health_paths(api_prefix: str) -> dict[str, str]:
    """{operationId: path} of the app's health routes, built as the process builds them."""
    app = create_app(Settings(_env_file=None, api_prefix=api_prefix))
    paths = app.openapi()["paths"]
    found = {
        operation["operationId"]: path
        for path, operations in paths.items()
        for method, operation in operations.items()
        if method == "get" and operation.get("operationId", "").startswith("health-")
    }
    assert {"health-live", "health-ready"} <= set(found), found
    return found


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: the overlays cannot be rendered here")
    return {name: render(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture
def clean_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built in a test see only what the test passes, not the suite's env."""
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- rendering


def test_the_overlays_exist() -> None:
    assert {"single-node", "production"} <= set(OVERLAYS)
    assert (K8S / "base" / "kustomization.yaml").is_file()


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_the_whole_service(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    kinds = [o["kind"] for o in objects]
    for kind in (
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "Job",
        "NetworkPolicy",
    ):
        assert kind in kinds, f"{overlay}: no {kind}"
    assert kinds.count("Ingress") == 2  # the API, and the model upload with its own limit
    assert kinds.count("CronJob") == 2
    assert "Secret" not in kinds, "the Secret is made by the operator, never rendered"
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    assert namespaces == {one(objects, "Namespace")["metadata"]["name"]}


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_strictly(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (dev extras)"
    )
    for obj in rendered[overlay]:
        version = kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        assert version == K8S_VERSION, (obj["kind"], version)


@needs_kubectl
def test_strict_validation_refuses_a_misspelt_field(rendered: dict[str, list[Obj]]) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (dev extras)"
    )
    deployment = copy.deepcopy(one(rendered["production"], "Deployment"))
    security = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    security["readOnlyRootFileSystem"] = security.pop("readOnlyRootFilesystem")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment = copy.deepcopy(one(rendered["production"], "Deployment"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "sixty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


# --------------------------------------------------------------------------- the pods


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_the_apps_health_routes(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objects = rendered[overlay]
    routes = health_paths(config_data(objects).get("API_PREFIX", "/api/v1"))
    container = api_container(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    expected = {
        "startupProbe": routes["health-live"],
        "livenessProbe": routes["health-live"],
        "readinessProbe": routes["health-ready"],
    }
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, (overlay, probe, get["path"])
        port = get["port"]
        assert (ports[port] if isinstance(port, str) else port) in ports.values()
    # The process listens where the probes and the Service knock.
    args = cli.build_parser().parse_args(container["command"][1:])
    assert container["command"][0] == "ocupredict" and args.func is cli.cmd_serve
    assert args.port == ports["http"] and args.host == "0.0.0.0"
    service = one(objects, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_health_paths_follow_api_prefix() -> None:
    # The probe check compares against the app as configured, not against a constant.
    assert health_paths("/x")["health-ready"] == "/x/health/ready"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_job_and_cronjobs_commands_parse_with_the_cli(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    expected = {
        "migrate": cli.cmd_migrate,
        "sweep-images": cli.cmd_sweep_images,
        "prune-audit": cli.cmd_prune_audit,
    }
    seen = set()
    image = api_container(objects)["image"]
    for obj, template in pod_templates(objects):
        if obj["kind"] == "Deployment":
            continue
        component = template["metadata"]["labels"]["app.kubernetes.io/component"]
        (container,) = template["spec"]["containers"]
        command = container["command"]
        assert command[0] == "ocupredict", command
        args = cli.build_parser().parse_args(command[1:])  # SystemExit on a bad command
        assert args.func is expected[component], (component, command)
        assert container["image"] == image  # the same release as the API
        assert template["spec"]["restartPolicy"] in {"Never", "OnFailure"}
        seen.add(component)
        if obj["kind"] == "CronJob":
            assert obj["spec"]["concurrencyPolicy"] == "Forbid"
    assert seen == set(expected)
    migrate = one(objects, "Job")
    assert (
        cli.build_parser()
        .parse_args(pod_template(migrate)["spec"]["containers"][0]["command"][1:])
        .revision
        == "head"
    )


def test_the_cli_check_refuses_a_command_it_does_not_know() -> None:
    parser = cli.build_parser()
    for bad in (["prune-audit"], ["sweep-images", "--older-than-hours", "0"], ["migrat"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_non_root_with_a_read_only_root_filesystem(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    for obj, template in pod_templates(objects):
        spec = template["spec"]
        where = f"{overlay} {obj['kind']} {obj['metadata']['name']}"
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        assert all(set(v) == {"name", "emptyDir"} for v in volumes.values()), where
        for container in all_containers(template):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in security["capabilities"], where
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts and mounts["/tmp"] in volumes, where
            for resource in ("cpu", "memory"):
                assert resource in container["resources"]["requests"], where
                assert resource in container["resources"]["limits"], where


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_writes_only_to_its_volumes(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objects = rendered[overlay]
    container = api_container(objects)
    mounts = [Path(m["mountPath"]) for m in container["volumeMounts"]]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    writable = [
        config_data(objects)["MODEL_CACHE_DIR"],
        env["XDG_CACHE_HOME"],
        env["MPLCONFIGDIR"],
        env.get("TMPDIR", "/tmp"),
    ]
    for path in writable:
        assert any(Path(path).is_relative_to(m) for m in mounts), (overlay, path)


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_inference_threads_match_the_cpu_request(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    container = api_container(objects)
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    args = cli.build_parser().parse_args(container["command"][1:])
    threads = int(config_data(objects)["INFERENCE_THREADS"])
    assert threads * args.workers == cpu_cores(requests["cpu"]), overlay
    assert cpu_cores(limits["cpu"]) == cpu_cores(requests["cpu"])  # no throttled threads
    assert "WEB_WORKERS" not in config_data(objects)  # one process a pod: --workers 1


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_outlasts_the_pause_and_the_drain(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    spec = pod_template(one(objects, "Deployment"))["spec"]
    pre_stop = api_container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    pause = float(pre_stop[1])
    assert pause >= 5  # the ingress controller needs a moment to drop the endpoint
    drain = float(config_data(objects)["SHUTDOWN_TIMEOUT_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] >= pause + drain + LIFESPAN_CLOSE_SECONDS


def test_serve_bounds_its_drain_and_logs_through_the_app(
    monkeypatch: pytest.MonkeyPatch, clean_settings_env: None
) -> None:
    """What the grace period counts on: `ocupredict serve` (the API pods' command) gives
    uvicorn SHUTDOWN_TIMEOUT_SECONDS for open requests, and leaves logging to the app (one
    JSON access line per request, no second text line from uvicorn)."""
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setenv("WEB_WORKERS", "3")  # cmd_serve sets it: restored after the test
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs, app=app))
    args = cli.build_parser().parse_args(["serve", "--port", "8080", "--workers", "1"])
    settings = Settings(_env_file=None, shutdown_timeout_seconds=42)
    assert cli.cmd_serve(settings, args) == 0
    assert seen["app"] == "app.main:create_app" and seen["factory"] is True
    assert seen["timeout_graceful_shutdown"] == 42
    # uvicorn's loggers go through the app's handler (app.observability), its access off.
    assert seen["access_log"] is False
    assert seen["log_config"]["handlers"]["ocupredict"]["()"] == "app.observability.make_handler"
    assert seen["workers"] == 1 and seen["port"] == 8080
    assert os.environ["WEB_WORKERS"] == "1"  # the process's own count, for its threads


# --------------------------------------------------------------------------- settings


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_comes_from_the_configmap_or_the_secret(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    configmap = one(objects, "ConfigMap")
    documented = documented_settings()
    known = setting_names()
    for key in configmap["data"]:
        assert key in known, f"{overlay}: ConfigMap key {key} is no setting"
        assert key in documented, f"{overlay}: ConfigMap key {key} is not in .env.example"
    leaked = secret_settings() & set(configmap["data"])
    assert not leaked, f"{overlay}: secrets in the ConfigMap: {leaked}"
    for obj, template in pod_templates(objects):
        for container in all_containers(template):
            refs = container["envFrom"]
            assert {"configMapRef": {"name": configmap["metadata"]["name"]}} in refs
            assert {"secretRef": {"name": SECRET_NAME}} in refs
            for entry in container.get("env", []):
                assert entry["name"] not in known, (
                    f"{obj['metadata']['name']}: setting {entry['name']} set inline, "
                    "not from the ConfigMap or the Secret"
                )


def test_the_secret_keys_are_documented_settings() -> None:
    keys = set(secret_example())
    assert keys, "deploy/k8s/secrets.env.example lists no key"
    assert keys <= setting_names()
    assert keys <= documented_settings()
    # Every secret the service has is in it (the other settings are in the ConfigMap).
    assert secret_settings() <= keys
    assert {"DATABASE_URL", "JWT_SECRET_KEY", "MAIL_PASSWORD"} <= secret_settings()


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.usefixtures("clean_settings_env")
def test_configmap_and_secret_make_a_production_configuration(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    values = {**config_data(rendered[overlay]), **secret_example()}
    settings = Settings(_env_file=None, **{k.lower(): v for k, v in values.items()})
    # The example Secret's placeholder is refused, so it cannot go to production unnoticed.
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY"):
        settings.check_production()
    values["JWT_SECRET_KEY"] = secrets.token_urlsafe(48)
    settings = Settings(_env_file=None, **{k.lower(): v for k, v in values.items()})
    settings.check_production()
    assert settings.is_production and settings.storage_backend == "s3"
    assert settings.database_url.startswith("mysql+aiomysql://")
    assert settings.trusted_proxies and settings.metrics_allowed  # behind the ingress


# --------------------------------------------------------------------------- selectors


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hpa_pdb_and_service_select_the_api_pods_only(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    deployment = one(objects, "Deployment")
    api_labels = pod_template(deployment)["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"], api_labels)
    other_pods = [
        template["metadata"]["labels"]
        for obj, template in pod_templates(objects)
        if obj["kind"] != "Deployment"
    ]
    assert len(other_pods) == 3

    pdb = one(objects, "PodDisruptionBudget")
    service = one(objects, "Service")
    for selector in (pdb["spec"]["selector"], {"matchLabels": service["spec"]["selector"]}):
        assert selects(selector, api_labels), (overlay, selector)
        assert not any(selects(selector, labels) for labels in other_pods), (overlay, selector)

    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    replicas = deployment["spec"].get("replicas")
    for hpa in hpas:
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"], target["name"]) == (
            "apps/v1",
            "Deployment",
            deployment["metadata"]["name"],
        )
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert replicas is None, "the autoscaler owns the count: no spec.replicas"
        smallest = hpa["spec"]["minReplicas"]
    if not hpas:
        assert replicas is not None, "no autoscaler: the Deployment says how many pods"
        smallest = replicas
    # A node drain can always proceed: the budget lets at least one pod go.
    spec = pdb["spec"]
    if "minAvailable" in spec:
        assert int(spec["minAvailable"]) < smallest
    else:
        assert int(spec["maxUnavailable"]) >= 1


def test_the_selector_check_can_say_no() -> None:
    labels = {"app.kubernetes.io/name": "ocupredict", "app.kubernetes.io/component": "api"}
    assert selects({"matchLabels": {"app.kubernetes.io/component": "api"}}, labels)
    assert not selects({"matchLabels": {"app.kubernetes.io/component": "migrate"}}, labels)
    assert not selects({}, labels)
    expression = {"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["api"]}
    assert not selects({"matchExpressions": [expression]}, labels)
    expression = {"key": "tier", "operator": "Exists"}
    assert not selects({"matchExpressions": [expression]}, labels)


@needs_kubectl
def test_single_node_runs_one_pod_and_production_autoscales(
    rendered: dict[str, list[Obj]],
) -> None:
    single = rendered["single-node"]
    assert one(single, "Deployment")["spec"]["replicas"] == 1
    assert not of_kind(single, "HorizontalPodAutoscaler")
    production = rendered["production"]
    hpa = one(production, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] >= 3
    cores = {
        name: cpu_cores(api_container(objs)["resources"]["requests"]["cpu"])
        for name, objs in rendered.items()
    }
    assert cores["production"] > cores["single-node"]
    assert "S3_ENDPOINT_URL" in config_data(single)  # MinIO
    assert "S3_ENDPOINT_URL" not in config_data(production)  # AWS S3 itself


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_each_pod_do_its_work(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    policies = of_kind(objects, "NetworkPolicy")
    deny = [p for p in policies if "ingress" not in p["spec"] and "egress" not in p["spec"]]
    assert deny, "a default-deny policy"

    def allowed(labels: dict[str, str], direction: str) -> set[object]:
        ports: set[object] = set()
        for policy in policies:
            spec = policy["spec"]
            if direction.capitalize() in spec["policyTypes"] and selects(
                spec["podSelector"], labels
            ):
                for rule in spec.get(direction, []):
                    ports |= {p["port"] for p in rule.get("ports", [])}
        return ports

    for obj, template in pod_templates(objects):
        labels = template["metadata"]["labels"]
        assert all(selects(p["spec"]["podSelector"], labels) for p in deny)
        assert {53, 3306, 443} <= allowed(labels, "egress"), obj["metadata"]["name"]
        if obj["kind"] == "Deployment":
            assert "http" in allowed(labels, "ingress")
        else:
            assert not allowed(labels, "ingress"), obj["metadata"]["name"]


# --------------------------------------------------------------------------- the ingress


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_takes_what_the_app_takes_over_tls(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    config = config_data(objects)
    settings = Settings(_env_file=None, api_prefix=config["API_PREFIX"])
    app = create_app(settings)
    # The API's operations, and the documentation pages outside API_PREFIX.
    app_paths = set(app.openapi()["paths"]) | {
        str(route.path) for route in app.routes if getattr(route, "path", "")
    }
    assert {"/docs", "/redoc", "/openapi.json"} <= app_paths
    service = one(objects, "Service")
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    models_path = f"{config['API_PREFIX']}/admin/models"
    for ingress in of_kind(objects, "Ingress"):
        spec = ingress["spec"]
        tls_hosts = {h for entry in spec["tls"] for h in entry["hosts"]}
        assert all(entry["secretName"] for entry in spec["tls"])
        paths = []
        for rule in spec["rules"]:
            assert rule["host"] in tls_hosts, "every host is served over TLS"
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] == service["metadata"]["name"]
                assert backend["port"]["name"] in service_ports
                paths.append((path["path"], path["pathType"]))
        for path, kind in paths:
            if kind == "Exact":
                assert path in app_paths, path
            else:  # a prefix of some route of the app
                assert any(p == path or p.startswith(path.rstrip("/") + "/") for p in app_paths)
            # /metrics stays inside the cluster.
            assert not (path == "/" or path == "/metrics" or "/metrics".startswith(path + "/"))
        if paths == [(models_path, "Exact")]:
            limit = int(config["MODEL_MAX_UPLOAD_MB"])
        else:
            limit = int(config["MAX_UPLOAD_MB"])
        # The app's own limit plus the multipart framing it allows for (as its nginx does).
        assert body_size_bytes(ingress) == limit * MIB + MULTIPART_OVERHEAD, (overlay, paths)


# --------------------------------------------------------------------------- ordering


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_first_apply_phase_holds_the_migration_and_what_it_needs(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    """README: apply `-l app.kubernetes.io/component!=api`, wait for the Job, apply all."""
    objects = rendered[overlay]

    def component(obj: Obj) -> str | None:
        return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")

    first = [o for o in objects if component(o) != "api"]
    names = {(o["kind"], o["metadata"]["name"]) for o in first}
    job = one(objects, "Job")
    spec = pod_template(job)["spec"]
    assert ("Job", job["metadata"]["name"]) in names
    assert ("ServiceAccount", spec["serviceAccountName"]) in names
    assert ("ConfigMap", spec["containers"][0]["envFrom"][0]["configMapRef"]["name"]) in names
    assert any(kind == "Namespace" for kind, _ in names)
    api_kinds = {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for obj in objects:
        if obj["kind"] in api_kinds:
            assert component(obj) == "api", (obj["kind"], "would start before the migration")


# --------------------------------------------------------------------------- compose


def test_compose_migrates_once_before_the_app() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    migrate = services["migrate"]
    args = cli.build_parser().parse_args(migrate["command"][1:])
    assert migrate["command"][0] == "ocupredict" and args.func is cli.cmd_migrate
    assert migrate.get("restart") == "no"
    assert migrate["depends_on"]["mariadb"]["condition"] == "service_healthy"
    app = services["app"]
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["environment"] == app["environment"]  # the same database and settings
    for name, service in services.items():
        command = service.get("command") or []
        text = " ".join(command) if isinstance(command, list) else command
        if name != "migrate":
            assert "migrate" not in text.split(), f"{name} still migrates"
        if "ocupredict" in text and name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == (
                "service_completed_successfully"
            ), name
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD"))
    assert "migrate" not in cmd, "the image's default command must not migrate"
