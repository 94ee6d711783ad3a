"""manifests/ renders with the real kubectl (offline), and what it renders runs guard as the pod would
see it: guard.yaml parses with guard's own settings loader over the files the Deployment mounts, the
policies ConfigMap passes `guard policy validate`, and RBAC grants what guard calls as itself."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from guard import settings as settings_module
from guard.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = {"single": 1, "federated": 3}
# What docs/deploying.md tells the operator to create outside kustomize (they hold keys).
EXTERNAL = {"guard-tls": ("tls.crt", "tls.key", "ca.crt"), "guard-bundle-key": ("bundle.pub",)}
REDIS_URL = "redis://guard:s3cret@redis.example:6379/0"

Doc = dict[str, Any]


@functools.cache
def render(directory: str) -> tuple[Doc, ...]:
    """`kubectl kustomize DIR` as a tuple of objects (kubectl must be on PATH, as for the e2e tests)."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl must be on PATH to render manifests/"
    out = subprocess.run([kubectl, "kustomize", str(MANIFESTS / directory)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def find(docs: tuple[Doc, ...], kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def container(docs: tuple[Doc, ...]) -> Doc:
    (deployment,) = find(docs, "Deployment", "guard")
    (guard,) = deployment["spec"]["template"]["spec"]["containers"]
    return guard  # type: ignore[no-any-return]


def config_map(docs: tuple[Doc, ...], prefix: str) -> Doc:
    """A generated ConfigMap by its name before kustomize's hash suffix."""
    found = [d for d in find(docs, "ConfigMap") if re.fullmatch(rf"{prefix}(-[a-z0-9]{{10}})?",
                                                                   d["metadata"]["name"])]
    assert len(found) == 1, f"one ConfigMap {prefix}, found {len(found)}"
    return found[0]


def materialize(docs: tuple[Doc, ...], root: Path) -> None:
    """Lay out under `root` the files the guard container sees through its volume mounts."""
    (deployment,) = find(docs, "Deployment", "guard")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    for mount in container(docs)["volumeMounts"]:
        target = root / mount["mountPath"].lstrip("/")
        files = _volume_files(docs, volumes[mount["name"]])
        if "subPath" in mount:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(files[mount["subPath"]])
            continue
        target.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (target / name).write_text(text)


def _volume_files(docs: tuple[Doc, ...], volume: Doc) -> dict[str, str]:
    if "emptyDir" in volume:
        return {}
    if "configMap" in volume:
        name = volume["configMap"]["name"]
        rendered = find(docs, "ConfigMap", name)
        if rendered:
            return dict(rendered[0]["data"])
    else:
        name = volume["secret"]["secretName"]
    assert name in EXTERNAL, f"volume {volume['name']} needs {name}, neither rendered nor documented"
    return {key: f"placeholder for {name}/{key}\n" for key in EXTERNAL[name]}


def _rooted(value: Any, root: Path) -> Any:
    """guard.yaml with every absolute path moved under `root`."""
    if isinstance(value, dict):
        return {k: _rooted(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_rooted(v, root) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return str(root) + value
    return value


def pod_settings(overlay: str, root: Path) -> tuple[Path, Settings]:
    """Load the overlay's guard.yaml from its materialized mount, with the container's overrides."""
    docs = render(f"overlays/{overlay}")
    materialize(docs, root)
    args = container(docs)["args"]
    config = root / args[args.index("--config") + 1].lstrip("/")
    config.write_text(yaml.safe_dump(_rooted(yaml.safe_load(config.read_text()), root)))
    redis = REDIS_URL if "--redis" in args else None
    return config, settings_module.load(config, overrides={"redis": redis})


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_renders_every_object_in_guard_system(overlay: str) -> None:
    """Each overlay renders the whole deployment, namespaced, with its replica count."""
    docs = render(f"overlays/{overlay}")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
                            "ConfigMap", "Deployment", "Service", "Service", "NetworkPolicy",
                            "PodDisruptionBudget"])
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    namespaced = [d for d in docs if d["kind"] not in cluster_scoped]
    assert all(d["metadata"].get("namespace") == "guard-system" for d in namespaced)
    (deployment,) = find(docs, "Deployment")
    assert deployment["spec"]["replicas"] == OVERLAYS[overlay]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_rendered_guard_yaml_loads_over_the_mounted_files(overlay: str, tmp_path: Path) -> None:
    """guard's loader accepts the ConfigMap's guard.yaml, every path it names being a mounted file."""
    _, s = pod_settings(overlay, tmp_path)
    assert s.cluster.in_cluster and s.forwarding == "impersonate"
    assert s.tls is not None and s.tls.client_ca is not None and s.policies is not None
    ports = {p["name"]: p["containerPort"] for p in container(render(f"overlays/{overlay}"))["ports"]}
    assert (s.listen.port, s.admin.port if s.admin else None) == (ports["https"], ports["admin"])
    assert s.listen.host == "0.0.0.0" and s.admin is not None and s.admin.host == "0.0.0.0"


def test_federated_takes_the_redis_url_from_the_secret_and_keeps_the_bundle_key(tmp_path: Path) -> None:
    """--redis $(GUARD_REDIS_URL) replaces only the URL; the public key and bundle dir are mounted."""
    docs = render("overlays/federated")
    c = container(docs)
    assert c["args"][-2:] == ["--redis", "$(GUARD_REDIS_URL)"]
    (env,) = [e for e in c["env"] if e["name"] == "GUARD_REDIS_URL"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "guard-redis", "key": "url"}
    _, s = pod_settings("federated", tmp_path)
    assert s.redis.url == REDIS_URL
    assert Path(s.redis.public_key).is_file()
    assert Path(s.redis.bundle_dir).is_dir()
    assert pod_settings("single", tmp_path / "single")[1].redis is None


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_policies_configmap_passes_guard_policy_validate(overlay: str, tmp_path: Path) -> None:
    """`guard policy validate --config guard.yaml` accepts the mounted policies, one OK per file."""
    config, s = pod_settings(overlay, tmp_path)
    assert s.policies is not None
    files = sorted(p.name for p in s.policies.iterdir())
    assert files == sorted(p.name for p in (ROOT / "policies").glob("*.y*ml"))
    out = subprocess.run([sys.executable, "-m", "guard.cli", "policy", "validate", "--config", str(config),
                          str(s.policies)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(": OK: tenant ") == len(files)


def test_policies_kustomization_lists_every_policy_file() -> None:
    """policies/Kustomization ships exactly the policy files of policies/ (kustomize has no globs)."""
    doc = yaml.safe_load((ROOT / "policies" / "Kustomization").read_text())
    (generator,) = doc["configMapGenerator"]
    assert sorted(generator["files"]) == sorted(p.name for p in (ROOT / "policies").glob("*.y*ml")), (
        "add the new policy file to policies/Kustomization")


def _grants(rules: list[Doc], group: str, resource: str, verb: str) -> bool:
    return any(group in r.get("apiGroups", []) and resource in r.get("resources", [])
               and verb in r["verbs"] for r in rules)


def test_cluster_role_grants_reviews_and_impersonation_and_nothing_broader() -> None:
    """guard may create Token/SubjectAccessReviews and impersonate, bound to its service account only."""
    docs = render("base")
    (role,) = find(docs, "ClusterRole", "guard")
    rules = role["rules"]
    assert _grants(rules, "authentication.k8s.io", "tokenreviews", "create")
    assert _grants(rules, "authorization.k8s.io", "subjectaccessreviews", "create")
    for group, resource in [("", "users"), ("", "groups"), ("", "serviceaccounts"),
                            ("authentication.k8s.io", "uids"), ("authentication.k8s.io", "userextras/*")]:
        assert _grants(rules, group, resource, "impersonate"), resource
    assert not any("*" in r.get(k, []) for r in rules for k in ("apiGroups", "resources", "verbs"))
    (binding,) = find(docs, "ClusterRoleBinding", "guard")
    assert binding["roleRef"]["name"] == "guard"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "guard", "namespace": "guard-system"}]
    (deployment,) = find(docs, "Deployment", "guard")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "guard"


def test_deployment_is_hardened_probed_and_drains_within_its_grace_period(tmp_path: Path) -> None:
    """Non-root, read-only, no capabilities; probes on the admin port; preStop + drain fit the grace."""
    docs = render("overlays/single")
    (deployment,) = find(docs, "Deployment", "guard")
    pod, c = deployment["spec"]["template"]["spec"], container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert {t["topologyKey"] for t in pod["topologySpreadConstraints"]} >= {"kubernetes.io/hostname"}
    sleep = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    _, s = pod_settings("single", tmp_path)
    assert sleep > 0 and pod["terminationGracePeriodSeconds"] > sleep + s.limits.drain_timeout


def test_admin_port_has_its_own_service_selected_for_scraping() -> None:
    """The API Service exposes only the API port; the ServiceMonitor selects the admin Service."""
    docs = render("base")
    (api,), (admin,) = find(docs, "Service", "guard"), find(docs, "Service", "guard-admin")
    assert [p["targetPort"] for p in api["spec"]["ports"]] == ["https"]
    assert [p["name"] for p in admin["spec"]["ports"]] == ["admin"]
    (monitor,) = find(render("monitoring"), "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= admin["metadata"]["labels"].items()
    assert not selector.items() <= api["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["admin"]


def _selects(selector: Doc | None, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) applied to `labels`."""
    if selector is None:
        return False
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], e.get("values", [])
        held = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
                "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not held:
            return False
    return True


def _peer_admits(peer: Doc, namespace: dict[str, str], pod: dict[str, str], own_namespace: bool) -> bool:
    assert "ipBlock" not in peer, "no ipBlock: pod and namespace selectors only"
    namespace_ok = _selects(peer["namespaceSelector"], namespace) if "namespaceSelector" in peer \
        else own_namespace
    return namespace_ok and ("podSelector" not in peer or _selects(peer["podSelector"], pod))


def admits(policy: Doc, port: str, namespace: dict[str, str], pod: dict[str, str]) -> bool:
    """Whether `policy` lets a pod with `pod` labels in a namespace with `namespace` labels connect to
    the named `port` (NetworkPolicy semantics: rules are alternatives; within a `from` entry the
    namespace and pod selectors must both hold; no `from` means every source)."""
    own = namespace.get("kubernetes.io/metadata.name") == policy["metadata"]["namespace"]
    for rule in policy["spec"].get("ingress", []):
        if rule.get("ports") and port not in [p["port"] for p in rule["ports"]]:
            continue
        if "from" not in rule or any(_peer_admits(p, namespace, pod, own) for p in rule["from"]):
            return True
    return False


def _ns(name: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": name}


PROMETHEUS = {"app.kubernetes.io/name": "prometheus", "prometheus": "k8s"}
ADMIN_REACH = [  # (source namespace, source pod labels, may it scrape the admin port?)
    (_ns("monitoring"), PROMETHEUS, True),
    (_ns("monitoring"), {"app.kubernetes.io/name": "grafana"}, False),
    (_ns("team-a"), PROMETHEUS, False),                       # a look-alike in a tenant's namespace
    (_ns("guard-system"), {"app.kubernetes.io/name": "guard"}, False),
    (_ns("team-a"), {"app": "anything"}, False),
]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
@pytest.mark.parametrize(("namespace", "pod", "scrapes"), ADMIN_REACH)
def test_network_policy_keeps_the_admin_port_to_prometheus_and_the_api_port_open(
        overlay: str, namespace: dict[str, str], pod: dict[str, str], scrapes: bool) -> None:
    """Any pod reaches the API port; only Prometheus's pods in `monitoring` reach the admin port."""
    docs = render(f"overlays/{overlay}")
    (policy,) = find(docs, "NetworkPolicy", "guard")
    (deployment,) = find(docs, "Deployment", "guard")
    assert _selects(policy["spec"]["podSelector"], deployment["spec"]["template"]["metadata"]["labels"])
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # guard's own calls out are not restricted
    named = {p["name"] for p in container(docs)["ports"]}
    assert {p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]} == named == {"https", "admin"}
    assert admits(policy, "https", namespace, pod)
    assert admits(policy, "admin", namespace, pod) is scrapes


def test_the_network_policy_checker_can_refuse() -> None:
    """The evaluator used above is not vacuous: separate from-entries are alternatives (OR)."""
    policy = {"metadata": {"namespace": "guard-system"}, "spec": {"ingress": [{"ports": [{"port": "admin"}],
              "from": [{"namespaceSelector": {"matchLabels": _ns("monitoring")}},
                       {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]}]}}
    assert admits(policy, "admin", _ns("monitoring"), {"app": "grafana"})        # the OR mistake
    assert admits(policy, "admin", _ns("guard-system"), PROMETHEUS)              # own namespace
    assert not admits(policy, "admin", _ns("team-a"), PROMETHEUS)
    assert not admits(policy, "https", _ns("monitoring"), PROMETHEUS)


RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_pod_meets_the_restricted_pod_security_standard(overlay: str) -> None:
    """Every check of Pod Security `restricted`, which the namespace enforces, holds for guard's pod."""
    docs = render(f"overlays/{overlay}")
    (namespace,) = find(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    (deployment,) = find(docs, "Deployment", "guard")
    pod = deployment["spec"]["template"]["spec"]
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"))
    assert not pod["securityContext"].get("sysctls")
    assert {k for v in pod["volumes"] for k in v if k != "name"} <= RESTRICTED_VOLUMES
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = {**pod["securityContext"], **c["securityContext"]}
        assert sc["runAsNonRoot"] is True and sc.get("runAsUser", 1) != 0
        assert sc["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost")
        assert sc["allowPrivilegeEscalation"] is False and not sc.get("privileged")
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert set(sc["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}
        assert not any(p.get("hostPort") for p in c.get("ports", []))
