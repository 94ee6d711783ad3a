"""The StatefulSet, DaemonSet and Job reconcile steps.

A StatefulSet has pods `name-0..n-1`, a DaemonSet one pod per node it tolerates, both with a
ControllerRevision per template (what `kubectl rollout history` reads); a Job's pods have already
Succeeded, so the Job is Complete once they exist. It must never be called for a kind it does not
know and never block: `chaos.sim.controllers` schedules it.
"""

from __future__ import annotations

from typing import Any

from chaos.sim.kinds import TABLE, Kind
from chaos.sim.pods import NODES, WORKERS
from chaos.sim.store import Store, now_rfc3339
from chaos.sim.workloads import (
    POD,
    count_ready,
    create,
    make_condition,
    owned,
    owner_ref,
    pod_body,
    scale_pods,
    short_hash,
    write_if_changed,
)

Obj = dict[str, Any]
REVISIONS = TABLE.lookup("apps", "v1", "controllerrevisions")


def _controller_revision(store: Store, kind: Kind, owner: Obj) -> str:
    """The name of the ControllerRevision holding the owner's template (made when new)."""
    assert REVISIONS is not None
    namespace, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
    template = owner["spec"].get("template") or {}
    digest = short_hash(template)
    existing = owned(store, REVISIONS, namespace, owner["metadata"]["uid"])
    if not any(r["metadata"]["name"] == f"{name}-{digest}" for r in existing):
        revision = max((int(r.get("revision", 0)) for r in existing), default=0) + 1
        data = {"spec": {"template": {**template, "$patch": "replace"}}}
        body = {
            "metadata": {
                "name": f"{name}-{digest}",
                "labels": template.get("metadata", {}).get("labels") or {},
                "ownerReferences": [owner_ref(kind, owner)],
            },
            "data": data,
            "revision": revision,
        }
        create(store, REVISIONS, namespace, body)
    return f"{name}-{digest}"


def statefulset(store: Store, kind: Kind, sts: Obj) -> None:
    assert POD is not None
    namespace, name, spec = sts["metadata"]["namespace"], sts["metadata"]["name"], sts["spec"]
    revision = _controller_revision(store, kind, sts)
    want = int(spec.get("replicas", 1))
    labels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
    for i in range(want):
        pod_name = f"{name}-{i}"
        if store.find(POD, namespace, pod_name) is None:
            extra = {
                **labels,
                "controller-revision-hash": revision,
                "statefulset.kubernetes.io/pod-name": pod_name,
                "apps.kubernetes.io/pod-index": str(i),
            }
            body = pod_body(kind, sts, spec.get("template") or {}, extra, name=pod_name)
            body["spec"] = {**body["spec"], "hostname": pod_name, "subdomain": spec.get("serviceName", "")}
            create(store, POD, namespace, body)
    for pod in owned(store, POD, namespace, sts["metadata"]["uid"]):
        index = pod["metadata"]["name"].rsplit("-", 1)[-1]
        if not index.isdigit() or int(index) >= want:
            store.delete(POD, namespace, pod["metadata"]["name"])
    ready = count_ready(owned(store, POD, namespace, sts["metadata"]["uid"]))
    status = {
        "observedGeneration": sts["metadata"].get("generation", 1),
        "replicas": want,
        "readyReplicas": ready,
        "currentReplicas": want,
        "updatedReplicas": want,
        "availableReplicas": ready,
        "currentRevision": revision,
        "updateRevision": revision,
        "collisionCount": 0,
    }
    write_if_changed(store, kind, sts, {**sts, "status": status})


def daemonset(store: Store, kind: Kind, ds: Obj) -> None:
    assert POD is not None
    namespace, spec = ds["metadata"]["namespace"], ds["spec"]
    revision = _controller_revision(store, kind, ds)
    tolerates_all = any(
        t.get("operator") == "Exists" and not t.get("key")
        for t in (spec.get("template") or {}).get("spec", {}).get("tolerations") or []
    )
    nodes = [n[0] for n in (NODES if tolerates_all else WORKERS)]
    pods = owned(store, POD, namespace, ds["metadata"]["uid"])
    placed = {p["spec"].get("nodeName") for p in pods}
    labels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
    extra = {
        **labels,
        "controller-revision-hash": revision.rsplit("-", 1)[-1],
        "pod-template-generation": str(ds["metadata"].get("generation", 1)),
    }
    for node in nodes:
        if node not in placed:
            body = pod_body(
                kind, ds, spec.get("template") or {}, extra, generateName=f"{ds['metadata']['name']}-"
            )
            body["spec"] = {**body["spec"], "nodeName": node}
            create(store, POD, namespace, body)
    ready = count_ready(owned(store, POD, namespace, ds["metadata"]["uid"]))
    status = {
        "currentNumberScheduled": len(nodes),
        "desiredNumberScheduled": len(nodes),
        "numberMisscheduled": 0,
        "numberReady": ready,
        "numberAvailable": ready,
        "updatedNumberScheduled": len(nodes),
        "observedGeneration": ds["metadata"].get("generation", 1),
    }
    write_if_changed(store, kind, ds, {**ds, "status": status})


def job(store: Store, kind: Kind, job_obj: Obj) -> None:
    spec = job_obj["spec"]
    if spec.get("suspend") or (job_obj.get("status") or {}).get("completionTime"):
        return
    labels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
    want = int(spec.get("completions") or 1)
    pods = scale_pods(store, kind, job_obj, want, labels)
    now = now_rfc3339()
    old = (job_obj.get("status") or {}).get("conditions") or []
    conditions = [
        {
            **make_condition(
                old,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ),
            "lastProbeTime": now,
        },
        {
            **make_condition(
                old, "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods"
            ),
            "lastProbeTime": now,
        },
    ]
    for condition in conditions:
        condition.pop("lastUpdateTime", None)
    status = {
        "startTime": job_obj["metadata"].get("creationTimestamp", now),
        "completionTime": now,
        "succeeded": len(pods),
        "ready": 0,
        "terminating": 0,
        "uncountedTerminatedPods": {},
        "conditions": conditions,
    }
    write_if_changed(store, kind, job_obj, {**job_obj, "status": status})
