"""The autoscaling/v1 `Scale` view of a deployment, read and written through `/scale`.

It must never write the store; the write path stores what `from_scale` returns.
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]


def _selector(obj: Obj) -> str:
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def to_scale(obj: Obj) -> Obj:
    meta = obj["metadata"]
    replicas = (obj.get("spec") or {}).get("replicas", 1)
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": replicas},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", replicas),
            "selector": _selector(obj),
        },
    }


def from_scale(obj: Obj, scale: Any) -> Obj:
    """The object with the replicas the Scale asks for; its resourceVersion is a precondition."""
    new = copy.deepcopy(obj)
    spec = (scale or {}).get("spec") or {}
    new.setdefault("spec", {})["replicas"] = int(spec.get("replicas", 0))
    wanted = ((scale or {}).get("metadata") or {}).get("resourceVersion")
    if wanted:
        new["metadata"]["resourceVersion"] = wanted
    return new
