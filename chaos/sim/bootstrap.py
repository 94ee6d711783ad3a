"""What a fresh simulated cluster holds: the api-server's bootstrap RBAC, the default namespaces,
the cluster's infrastructure (`chaos.sim.cluster`), the objects of a `--bootstrap` file, and
`--seed-objects` pods.

The built-in roles are the api-server's own (cluster-admin bound to system:masters, discovery and
self-review for every authenticated user), so clients behave as on a real cluster; a bootstrap file
adds to them. It must never be called once the simulator serves traffic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from chaos.sim import cluster
from chaos.sim.defaults import apply_defaults
from chaos.sim.kinds import TABLE
from chaos.sim.store import Store

RBAC = "rbac.authorization.k8s.io/v1"
NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
DISCOVERY_URLS = [
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/readyz",
    "/openapi",
    "/openapi/*",
    "/version",
    "/version/",
    "/.well-known/openid-configuration",
    "/openid/v1/jwks",
]


_WRITE_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class BootstrapError(ValueError):
    """The bootstrap file is unreadable or holds something the simulator cannot store."""


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules}


def _cluster_binding(name: str, role: str, group: str) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
    }


def default_objects() -> list[dict[str, Any]]:
    self_reviews = [
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            "verbs": ["create"],
        },
        {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
    ]
    return [
        _cluster_role(
            "cluster-admin",
            [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        _cluster_binding("cluster-admin", "cluster-admin", "system:masters"),
        _cluster_role("system:discovery", [{"nonResourceURLs": DISCOVERY_URLS, "verbs": ["get"]}]),
        _cluster_binding("system:discovery", "system:discovery", "system:authenticated"),
        _cluster_role("system:basic-user", self_reviews),
        _cluster_role(
            "system:auth-delegator",
            [
                {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["subjectaccessreviews"],
                    "verbs": ["create"],
                },
            ],
        ),
        _cluster_role("admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        _cluster_role("edit", [{"apiGroups": ["*"], "resources": ["*"], "verbs": _WRITE_VERBS}]),
        _cluster_role("view", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]),
        _cluster_binding("system:basic-user", "system:basic-user", "system:authenticated"),
        _cluster_role(
            "system:public-info-viewer",
            [
                {
                    "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"],
                }
            ],
        ),
        _cluster_binding("system:public-info-viewer", "system:public-info-viewer", "system:unauthenticated"),
    ]


def read_bootstrap(path: Path) -> list[dict[str, Any]]:
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except OSError as e:
        raise BootstrapError(f"cannot read bootstrap file {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise BootstrapError(f"bootstrap file {path} is not valid YAML: {e}") from e
    objects: list[dict[str, Any]] = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise BootstrapError(f"bootstrap file {path}: each document must be an object")
        objects.extend(doc.get("items") or [] if doc.get("kind") == "List" else [doc])
    for obj in objects:
        if TABLE.by_kind(str(obj.get("apiVersion")), str(obj.get("kind"))) is None:
            raise BootstrapError(
                f"bootstrap file {path}: unknown kind {obj.get('apiVersion')}/{obj.get('kind')}"
            )
    return objects


def load_objects(store: Store, objects: list[dict[str, Any]], *, defaults: bool = True) -> None:
    """Store objects that are not there yet, with the server's defaults unless told otherwise
    (seeded pods keep exactly the size the load model asked for)."""
    for obj in objects:
        kind = TABLE.by_kind(str(obj.get("apiVersion")), str(obj.get("kind")))
        if kind is None or not kind.stored:
            continue
        namespace = (obj.get("metadata") or {}).get("namespace", "default") if kind.namespaced else ""
        if store.find(kind, namespace, obj["metadata"]["name"]) is not None:
            continue
        prepared = store.prepare_create(kind, namespace, obj)
        store.insert(kind, namespace, apply_defaults(prepared) if defaults else prepared)
        if kind.kind == "Namespace":
            load_objects(store, cluster.namespace_objects(obj["metadata"]["name"]))


def namespace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def seed_pod(index: int, padding: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"seed-{index}",
            "namespace": f"seed-{index % 10}",
            "labels": {"app": f"seed-{index % 7}", "seed": "true"},
            "annotations": {"chaos.sim/padding": "x" * padding},
        },
        "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.9"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "main",
                    "ready": True,
                    "restartCount": 0,
                    "image": "registry.k8s.io/pause:3.9",
                    "imageID": "sim://registry.k8s.io/pause:3.9",
                    "state": {"running": {}},
                }
            ],
        },
    }


def populate(
    store: Store,
    *,
    bootstrap: list[dict[str, Any]],
    seed_objects: int,
    seed_bytes: int,
    system_pods: bool = False,
) -> None:
    load_objects(store, [namespace(n) for n in NAMESPACES])
    load_objects(store, default_objects())
    load_objects(store, cluster.infrastructure())
    if system_pods:
        load_objects(store, cluster.system_workloads())
    load_objects(store, [o for o in bootstrap if o.get("kind") == "Namespace"])
    load_objects(store, bootstrap)
    if seed_objects:
        load_objects(store, [namespace(f"seed-{i}") for i in range(min(seed_objects, 10))])
        # ~700 bytes is the pod without padding; the rest is the annotation.
        padding = max(0, seed_bytes - 700)
        load_objects(store, [seed_pod(i, padding) for i in range(seed_objects)], defaults=False)
