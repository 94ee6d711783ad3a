"""`Table` answers for `kubectl get` (Accept: application/json;as=Table;g=meta.k8s.io;v=v1).

Columns follow the api-server's printers for the kinds kubectl users look at most (pods, nodes,
deployments, replica/stateful/daemon sets, jobs, namespaces, services, configmaps, secrets) and
NAME/AGE elsewhere. It must never change the objects it prints.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
Column = tuple[str, str, Callable[[Obj], Any]]


def wants_table(accept: str) -> bool:
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def age(obj: Obj, now: datetime | None = None) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= 120):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _ready(pod: Obj) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _restarts(pod: Obj) -> int:
    return sum(
        int(s.get("restartCount", 0)) for s in (pod.get("status") or {}).get("containerStatuses") or []
    )


def _status(obj: Obj) -> Any:
    return obj.get("status") or {}


def _pod_status(pod: Obj) -> str:
    """What kubectl shows: Terminating, a waiting or terminated reason (ContainerCreating, Completed),
    else the phase."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    for status in _status(pod).get("containerStatuses") or []:
        state = status.get("state") or {}
        reason = (state.get("waiting") or state.get("terminated") or {}).get("reason")
        if reason:
            return str(reason)
    return str(_status(pod).get("phase", ""))


def _node_status(node: Obj) -> str:
    ready = next((c for c in _status(node).get("conditions") or [] if c.get("type") == "Ready"), {})
    return "Ready" if ready.get("status") == "True" else "NotReady"


def _roles(node: Obj) -> str:
    labels = (node.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    return ",".join(roles) or "<none>"


def _job_status(job: Obj) -> str:
    conditions = {c.get("type"): c.get("status") for c in _status(job).get("conditions") or []}
    return "Complete" if conditions.get("Complete") == "True" else "Running"


_NAME: Column = ("Name", "string", lambda o: o["metadata"]["name"])
_AGE: Column = ("Age", "string", age)
COLUMNS: dict[str, list[Column]] = {
    "Pod": [
        _NAME,
        ("Ready", "string", _ready),
        ("Status", "string", _pod_status),
        ("Restarts", "integer", _restarts),
        _AGE,
    ],
    "Deployment": [
        _NAME,
        ("Ready", "string", lambda o: f"{_status(o).get('readyReplicas', 0)}/{o['spec'].get('replicas', 1)}"),
        ("Up-to-date", "integer", lambda o: _status(o).get("updatedReplicas", 0)),
        ("Available", "integer", lambda o: _status(o).get("availableReplicas", 0)),
        _AGE,
    ],
    "Namespace": [_NAME, ("Status", "string", lambda o: _status(o).get("phase", "Active")), _AGE],
    "Node": [
        _NAME,
        ("Status", "string", _node_status),
        ("Roles", "string", _roles),
        _AGE,
        ("Version", "string", lambda o: (_status(o).get("nodeInfo") or {}).get("kubeletVersion", "")),
    ],
    "ReplicaSet": [
        _NAME,
        ("Desired", "integer", lambda o: (o.get("spec") or {}).get("replicas", 1)),
        ("Current", "integer", lambda o: _status(o).get("replicas", 0)),
        ("Ready", "integer", lambda o: _status(o).get("readyReplicas", 0)),
        _AGE,
    ],
    "StatefulSet": [
        _NAME,
        ("Ready", "string", lambda o: f"{_status(o).get('readyReplicas', 0)}/{o['spec'].get('replicas', 1)}"),
        _AGE,
    ],
    "DaemonSet": [
        _NAME,
        ("Desired", "integer", lambda o: _status(o).get("desiredNumberScheduled", 0)),
        ("Current", "integer", lambda o: _status(o).get("currentNumberScheduled", 0)),
        ("Ready", "integer", lambda o: _status(o).get("numberReady", 0)),
        ("Up-to-date", "integer", lambda o: _status(o).get("updatedNumberScheduled", 0)),
        ("Available", "integer", lambda o: _status(o).get("numberAvailable", 0)),
        _AGE,
    ],
    "Job": [
        _NAME,
        ("Status", "string", _job_status),
        ("Completions", "string",
         lambda o: f"{_status(o).get('succeeded', 0)}/{(o.get('spec') or {}).get('completions', 1)}"),
        _AGE,
    ],
    "Service": [
        _NAME,
        ("Type", "string", lambda o: o.get("spec", {}).get("type", "ClusterIP")),
        ("Cluster-IP", "string", lambda o: o.get("spec", {}).get("clusterIP", "<none>")),
        _AGE,
    ],
    "ConfigMap": [
        _NAME,
        ("Data", "integer", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
        _AGE,
    ],
    "Secret": [
        _NAME,
        ("Type", "string", lambda o: o.get("type", "Opaque")),
        ("Data", "integer", lambda o: len(o.get("data") or {})),
        _AGE,
    ],
}


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def to_table(
    kind_name: str,
    objects: list[Obj],
    *,
    resource_version: str,
    include: str = "Metadata",
    cont: str = "",
    remaining: int | None = None,
) -> Obj:
    columns = COLUMNS.get(kind_name, [_NAME, _AGE])
    rows = []
    for obj in objects:
        row: Obj = {"cells": [fn(obj) for _, _, fn in columns]}
        embedded = _row_object(obj, include)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    meta: Obj = {"resourceVersion": resource_version}
    if cont:
        meta["continue"] = cont
    if remaining is not None:
        meta["remainingItemCount"] = remaining
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": [
            {
                "name": name,
                "type": type_,
                "format": "name" if name == "Name" else "",
                "description": f"{name} of the {kind_name}",
                "priority": 0,
            }
            for name, type_, _ in columns
        ],
        "rows": rows,
    }
