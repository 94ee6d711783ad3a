"""The ReplicaSet, ReplicationController and Deployment reconcile steps, and the helpers every
workload step shares (ownership, pods from a template, conditions).

Each step reads the store, writes only what differs (so a step run twice writes nothing the second
time) and reports as the kube-controller-manager does: a Deployment owns one ReplicaSet per
template (`pod-template-hash`, `deployment.kubernetes.io/revision`, so rollout history and undo
work). Pods start at once (`chaos.sim.pods`), so a workload is available as soon as its pods
exist. It must never be called for a kind it does not know and never block:
`chaos.sim.controllers` schedules it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from chaos.sim.defaults import apply_defaults
from chaos.sim.kinds import TABLE, Kind
from chaos.sim.store import Store, now_rfc3339

Obj = dict[str, Any]
POD = TABLE.lookup("", "v1", "pods")
RS = TABLE.lookup("apps", "v1", "replicasets")
REVISION = "deployment.kubernetes.io/revision"
HASH = "pod-template-hash"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def short_hash(value: Any, size: int = 10) -> str:
    digest = int(hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest(), 16)
    out = ""
    while len(out) < size:
        digest, index = divmod(digest, len(_ALPHABET))
        out += _ALPHABET[index]
    return out


def owner_ref(kind: Kind, owner: Obj) -> Obj:
    meta = owner["metadata"]
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned(store: Store, kind: Kind, namespace: str, uid: str) -> list[Obj]:
    return [
        obj
        for _, obj in store.items(kind, namespace)
        if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])
    ]


def create(store: Store, kind: Kind, namespace: str, body: Obj) -> Obj:
    obj = store.prepare_create(kind, namespace, body)
    apply_defaults(obj)
    return store.insert(kind, namespace, obj)


def write_if_changed(store: Store, kind: Kind, current: Obj, new: Obj) -> None:
    if new != current:
        store.update(kind, current["metadata"].get("namespace", ""), current["metadata"]["name"], new)


def make_condition(old: list[Obj], kind: str, status: str, reason: str, message: str) -> Obj:
    """A condition keeping its old timestamps when nothing about it changed."""
    now = now_rfc3339()
    prior = next((c for c in old if c.get("type") == kind), {})
    same = (prior.get("status"), prior.get("reason"), prior.get("message")) == (status, reason, message)
    times = {k: prior[k] for k in ("lastUpdateTime", "lastTransitionTime") if same and k in prior}
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": times.get("lastUpdateTime", now),
        "lastTransitionTime": times.get("lastTransitionTime", now),
        "reason": reason,
        "message": message,
    }


def pod_body(owner_kind: Kind, owner: Obj, template: Obj, labels: Obj, **meta: Any) -> Obj:
    template = copy.deepcopy(template)
    pod_meta = {**template.get("metadata", {}), **meta}
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **labels}
    pod_meta["ownerReferences"] = [owner_ref(owner_kind, owner)]
    if "name" not in meta:
        pod_meta.pop("name", None)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": template.get("spec") or {}}


def count_ready(pods: list[Obj]) -> int:
    return sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running")


def scale_pods(store: Store, kind: Kind, owner: Obj, want: int, labels: Obj) -> list[Obj]:
    """Make `owner` own `want` pods from its template; the pods it owns afterwards."""
    assert POD is not None
    namespace, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
    pods = owned(store, POD, namespace, owner["metadata"]["uid"])
    template = owner["spec"].get("template") or {}
    for _ in range(want - len(pods)):
        pods.append(
            create(store, POD, namespace, pod_body(kind, owner, template, labels, generateName=f"{name}-"))
        )
    for extra in sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"])[want:]:
        store.delete(POD, namespace, extra["metadata"]["name"])
    return owned(store, POD, namespace, owner["metadata"]["uid"])


def replicaset(store: Store, kind: Kind, rs: Obj) -> None:
    """ReplicaSet and ReplicationController: the number of pods, then the status."""
    spec = rs["spec"]
    labels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
    pods = scale_pods(store, kind, rs, int(spec.get("replicas", 1)), labels)
    ready = count_ready(pods)
    status = {
        "replicas": len(pods),
        "fullyLabeledReplicas": len(pods),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": rs["metadata"].get("generation", 1),
    }
    write_if_changed(store, kind, rs, {**rs, "status": status})


def _without_hash(template: Obj) -> Any:
    template = copy.deepcopy(template)
    (template.get("metadata") or {}).get("labels", {}).pop(HASH, None)
    return _normal(template)


def _normal(value: Any) -> Any:
    """A template as compared: nulls dropped (kubectl sends `creationTimestamp: null`)."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _revision(rs: Obj) -> int:
    return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0") or 0)


def deployment(store: Store, kind: Kind, dep: Obj) -> None:
    assert RS is not None
    namespace, name, spec = dep["metadata"]["namespace"], dep["metadata"]["name"], dep["spec"]
    if spec.get("paused"):
        return
    template = spec.get("template") or {}
    sets = owned(store, RS, namespace, dep["metadata"]["uid"])
    current = next((r for r in sets if _without_hash(r["spec"]["template"]) == _without_hash(template)), None)
    newest = max((_revision(r) for r in sets), default=0)
    if current is None:
        current = _new_replicaset(store, dep, template, newest + 1)
    elif _revision(current) < newest:
        _set_revision(store, current, newest + 1)
    for rs in owned(store, RS, namespace, dep["metadata"]["uid"]):
        want = int(spec.get("replicas", 1)) if rs["metadata"]["uid"] == current["metadata"]["uid"] else 0
        if rs["spec"].get("replicas") != want:
            store.update(
                RS, namespace, rs["metadata"]["name"], {**rs, "spec": {**rs["spec"], "replicas": want}}
            )
    _deployment_status(store, kind, dep, name)


def _new_replicaset(store: Store, dep: Obj, template: Obj, revision: int) -> Obj:
    assert RS is not None
    digest = short_hash(template)
    labels = {**(template.get("metadata", {}).get("labels") or {}), HASH: digest}
    template = copy.deepcopy(template)
    template.setdefault("metadata", {})["labels"] = labels
    selector = copy.deepcopy(dep["spec"].get("selector") or {})
    selector.setdefault("matchLabels", {})[HASH] = digest
    body = {
        "metadata": {
            "name": f"{dep['metadata']['name']}-{digest}",
            "labels": labels,
            "annotations": {REVISION: str(revision)},
            "ownerReferences": [owner_ref(DEPLOYMENT, dep)],
        },
        "spec": {"replicas": 0, "selector": selector, "template": template},
    }
    return create(store, RS, dep["metadata"]["namespace"], body)


def _set_revision(store: Store, rs: Obj, revision: int) -> None:
    assert RS is not None
    meta = {
        **rs["metadata"],
        "annotations": {**(rs["metadata"].get("annotations") or {}), REVISION: str(revision)},
    }
    store.update(RS, meta["namespace"], meta["name"], {**rs, "metadata": meta})


def _deployment_status(store: Store, kind: Kind, dep: Obj, name: str) -> None:
    assert RS is not None
    dep = store.get(kind, dep["metadata"]["namespace"], name)
    sets = owned(store, RS, dep["metadata"]["namespace"], dep["metadata"]["uid"])
    newest = max(sets, key=_revision)
    total = sum(int((r.get("status") or {}).get("replicas", 0)) for r in sets)
    ready = sum(int((r.get("status") or {}).get("readyReplicas", 0)) for r in sets)
    updated = int((newest.get("status") or {}).get("replicas", 0))
    old = (dep.get("status") or {}).get("conditions") or []
    wanted = int(dep["spec"].get("replicas", 1))
    status = {
        "observedGeneration": dep["metadata"].get("generation", 1),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": max(0, total - ready),
        "conditions": [
            make_condition(old, "Available", *_availability(dep, ready)),
            make_condition(old, "Progressing", "True", *_progress(newest, done=updated == ready == wanted)),
        ],
    }
    if not status["unavailableReplicas"]:
        del status["unavailableReplicas"]
    annotations = {**(dep["metadata"].get("annotations") or {}), REVISION: str(_revision(newest))}
    write_if_changed(
        store,
        kind,
        dep,
        {**dep, "metadata": {**dep["metadata"], "annotations": annotations}, "status": status},
    )


def _availability(dep: Obj, ready: int) -> tuple[str, str, str]:
    """The Available condition: at least replicas - maxUnavailable pods ready."""
    wanted = int(dep["spec"].get("replicas", 1))
    surge = ((dep["spec"].get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    unavailable = wanted * int(str(surge)[:-1]) // 100 if str(surge).endswith("%") else int(surge or 0)
    if ready >= wanted - unavailable:
        return "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
    return "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."


def _progress(newest: Obj, *, done: bool) -> tuple[str, str]:
    name = newest["metadata"]["name"]
    if done:
        return "NewReplicaSetAvailable", f'ReplicaSet "{name}" has successfully progressed.'
    return "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.'


DEPLOYMENT = TABLE.lookup("apps", "v1", "deployments")
