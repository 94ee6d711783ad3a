"""What the api-server and its controllers fill in on write, collapsed to the moment of the write.

Pods run at once, deployments are immediately ready, services get a cluster IP, secrets fold
stringData into data, namespaces are Active. It must never reject anything: validation is elsewhere.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

Obj = dict[str, Any]
_CLUSTER_IPS = itertools.count(10)


def _pod(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("nodeName", "sim-node-0")
    containers = spec.get("containers") or []
    status = obj.setdefault("status", {})
    status.setdefault("phase", "Running")
    status.setdefault("podIP", "10.244.0.10")
    status.setdefault(
        "containerStatuses",
        [
            {
                "name": c.get("name", ""),
                "image": c.get("image", ""),
                "imageID": f"sim://{c.get('image', '')}",
                "containerID": f"sim://{obj['metadata'].get('uid', '')}/{c.get('name', '')}",
                "ready": True,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": obj["metadata"].get("creationTimestamp")}},
            }
            for c in containers
            if isinstance(c, dict)
        ],
    )


def _deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    replicas = spec.setdefault("replicas", 1)
    obj["status"] = {
        "observedGeneration": obj["metadata"].get("generation", 1),
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }


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
    "Pod": _pod,
    "Deployment": _deployment,
    "Service": _service,
    "Secret": _secret,
    "Namespace": _namespace,
}


def apply_defaults(obj: Obj) -> Obj:
    fill = _BY_KIND.get(str(obj.get("kind")))
    if fill is not None:
        fill(obj)
    return obj
