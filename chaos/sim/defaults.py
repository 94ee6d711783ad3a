"""What the api-server and its controllers fill in on write, collapsed to the moment of the write.

Pods are scheduled and started (`chaos.sim.pods`), workloads get their spec defaults (their status
is the controllers' job), services get a cluster IP, secrets fold stringData into data, namespaces
are Active, CRDs are Established. It must never reject anything: validation is elsewhere.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

from chaos.sim import crds, pods
from chaos.sim.store import now_rfc3339

Obj = dict[str, Any]
_CLUSTER_IPS = itertools.count(10)


def _template(spec: Obj) -> None:
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {})
    pod_spec = template.setdefault("spec", {})
    pod_spec.setdefault("restartPolicy", "Always")
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("schedulerName", "default-scheduler")
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    pod_spec.setdefault("securityContext", {})
    pods.default_containers(pod_spec)


def _deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault(
        "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    )
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template(spec)


def _replicated(obj: Obj) -> None:
    """ReplicaSets, StatefulSets, ReplicationControllers: replicas and the pod template."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    _template(spec)
    if obj.get("kind") == "ReplicationController":
        labels = spec["template"]["metadata"].get("labels") or {}
        spec.setdefault("selector", dict(labels))
        obj["metadata"].setdefault("labels", dict(labels))
    if obj.get("kind") == "StatefulSet":
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        spec.setdefault("revisionHistoryLimit", 10)


def _daemonset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault(
        "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    )
    spec.setdefault("revisionHistoryLimit", 10)
    _template(spec)


def _job(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    for key, value in (
        ("parallelism", 1),
        ("completions", 1),
        ("backoffLimit", 6),
        ("completionMode", "NonIndexed"),
        ("suspend", False),
        ("podReplacementPolicy", "TerminatingOrFailed"),
        ("manualSelector", False),
    ):
        spec.setdefault(key, value)
    _template(spec)
    uid, name = obj["metadata"].get("uid", ""), obj["metadata"].get("name", "")
    labels = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    if not spec.get("selector"):
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    spec["template"]["metadata"]["labels"] = {**labels, **(spec["template"]["metadata"].get("labels") or {})}


def _cronjob(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    for key, value in (
        ("concurrencyPolicy", "Allow"),
        ("suspend", False),
        ("successfulJobsHistoryLimit", 3),
        ("failedJobsHistoryLimit", 1),
    ):
        spec.setdefault(key, value)


def _crd(obj: Obj) -> None:
    if not (obj.get("status") or {}).get("conditions"):
        crds.establish(obj, now_rfc3339())


def _service(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    if "clusterIP" not in spec:
        n = next(_CLUSTER_IPS)
        spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
        spec["clusterIPs"] = [spec["clusterIP"]]
    obj.setdefault("status", {"loadBalancer": {}})


def _secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None) or {}
    data = obj.setdefault("data", {}) if string_data else obj.get("data")
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()  # type: ignore[index]


def _namespace(obj: Obj) -> None:
    obj.setdefault("spec", {"finalizers": ["kubernetes"]})
    obj["status"] = {"phase": "Active"}
    labels = obj["metadata"].setdefault("labels", {})
    labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


_BY_KIND = {
    "Pod": pods.start,
    "Deployment": _deployment,
    "ReplicaSet": _replicated,
    "StatefulSet": _replicated,
    "ReplicationController": _replicated,
    "DaemonSet": _daemonset,
    "Job": _job,
    "CronJob": _cronjob,
    "CustomResourceDefinition": _crd,
    "Service": _service,
    "Secret": _secret,
    "Namespace": _namespace,
}


def apply_defaults(obj: Obj) -> Obj:
    fill = _BY_KIND.get(str(obj.get("kind")))
    if fill is not None:
        fill(obj)
    return obj
