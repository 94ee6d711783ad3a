"""What the scheduler and the kubelet make of a pod: its defaults, its node, its start, its end.

A new pod lands on a worker node (round robin, or the node it names) and is Pending
(ContainerCreating); `running` is the pod once its kubelet started it (an IP from the node's pod
range, the five conditions, container statuses), or for a pod a Job owns, once it Succeeded (exit
code 0); `terminating` is a pod deleted with a grace period. `chaos.sim.controllers` decides when.
It must never reject a pod and never keep state beyond the round-robin counters.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from chaos.sim.store import now_rfc3339

Obj = dict[str, Any]
NODES = (
    # name, internal IP, pod CIDR prefix, role
    ("sim-control-plane", "172.18.0.2", "10.244.0", "control-plane"),
    ("sim-worker", "172.18.0.3", "10.244.1", ""),
    ("sim-worker2", "172.18.0.4", "10.244.2", ""),
)
WORKERS = tuple(n for n in NODES if n[3] != "control-plane")
_NEXT_NODE = itertools.count()
_NEXT_IP = itertools.count(2)
_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
_DEFAULT_TOLERATIONS = tuple(
    {
        "key": f"node.kubernetes.io/{key}",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    }
    for key in ("not-ready", "unreachable")
)  # the DefaultTolerationSeconds admission plugin's


def _node(name: str) -> tuple[str, str, str, str]:
    for node in NODES:
        if node[0] == name:
            return node
    return (name, "172.18.0.9", "10.244.9", "")


def schedule(spec: Obj) -> tuple[str, str, str]:
    """(node name, host IP, pod IP) for a pod with this spec."""
    node = _node(spec["nodeName"]) if spec.get("nodeName") else WORKERS[next(_NEXT_NODE) % len(WORKERS)]
    n = next(_NEXT_IP)
    return node[0], node[1], f"{node[2]}.{n % 250 + 2}"


def _qos(containers: list[Obj]) -> str:
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        r.get("limits")
        and all(r["limits"].get(k) == (r.get("requests") or r["limits"]).get(k) for k in ("cpu", "memory"))
        and {"cpu", "memory"} <= set(r["limits"])
        for r in resources
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _container_status(pod: Obj, container: Obj, now: str, done: bool) -> Obj:
    image = str(container.get("image", ""))
    state: Obj = {"running": {"startedAt": now}}
    if done:
        state = {
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": now,
                "finishedAt": now,
                "containerID": _container_id(pod, container),
            }
        }
    return {
        "name": container.get("name", ""),
        "state": state,
        "lastState": {},
        "ready": not done,
        "restartCount": 0,
        "image": image if "/" in image or ":" in image else f"docker.io/library/{image}:latest",
        "imageID": f"docker.io/library/{image.split(':')[0]}@sha256:{'0' * 64}",
        "containerID": _container_id(pod, container),
        "started": not done,
    }


def _container_id(pod: Obj, container: Obj) -> str:
    uid = str(pod["metadata"].get("uid", "")).replace("-", "")
    return f"containerd://{uid}{str(container.get('name', '')).encode().hex()}"[:77]


def _owned_by_job(pod: Obj) -> bool:
    return any(ref.get("kind") == "Job" for ref in pod["metadata"].get("ownerReferences") or [])


def _conditions(now: str, done: bool) -> list[Obj]:
    out = []
    for kind in _CONDITIONS:
        ready = kind in ("Ready", "ContainersReady")
        status = "False" if done and (ready or kind == "PodReadyToStartContainers") else "True"
        cond: Obj = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": now}
        if status == "False" and ready:
            cond["reason"] = "PodCompleted"
        out.append(cond)
    return out


def default_containers(spec: Obj) -> None:
    """The api-server's defaults for each container of a pod spec (also a template's)."""
    for container in spec.get("containers") or []:
        if isinstance(container, dict):
            image = str(container.get("image", ""))
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
            container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            container.setdefault("resources", {})


def start(pod: Obj) -> None:
    """Schedule and start a new pod (fill spec and status defaults the control plane owns)."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    spec.setdefault("tolerations", [dict(t) for t in _DEFAULT_TOLERATIONS])
    default_containers(spec)
    if (pod.get("status") or {}).get("phase"):
        return
    spec.setdefault("nodeName", schedule(spec)[0])
    now = pod["metadata"].get("creationTimestamp") or now_rfc3339()
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    waiting = {"waiting": {"reason": "ContainerCreating"}}
    pod["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": kind,
                "status": "True" if kind == "PodScheduled" else "False",
                "lastProbeTime": None,
                "lastTransitionTime": now,
                **({} if kind == "PodScheduled" else {"reason": "ContainersNotReady"}),
            }
            for kind in _CONDITIONS
        ],
        "hostIP": _node(spec["nodeName"])[1],
        "startTime": now,
        "containerStatuses": [
            {**_container_status(pod, c, now, False), "state": waiting, "ready": False, "started": False}
            for c in containers
        ],
        "qosClass": _qos(containers),
    }


def pending(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Pending" and not pod["metadata"].get(
        "deletionTimestamp"
    )


def running(pod: Obj) -> Obj:
    """The pod as its kubelet reports it once the containers started (or, for a Job's pod, ended)."""
    new = copy.deepcopy(pod)
    spec = new["spec"]
    _, host_ip, pod_ip = schedule(spec)
    done = _owned_by_job(new)
    now = now_rfc3339()
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    new["status"] = {
        **new.get("status", {}),
        "phase": "Succeeded" if done else "Running",
        "conditions": _conditions(now, done),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "containerStatuses": [_container_status(new, c, now, done) for c in containers],
    }
    return new


def terminating(pod: Obj, grace: int) -> Obj:
    """The pod once deleted with a grace period: marked for deletion, its containers stopping."""
    new = copy.deepcopy(pod)
    new["metadata"]["deletionTimestamp"] = now_rfc3339()
    new["metadata"]["deletionGracePeriodSeconds"] = grace
    for condition in (new.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Ready", "ContainersReady") and condition.get("status") == "True":
            condition.update(status="False", reason="PodCompleted", lastTransitionTime=now_rfc3339())
    return new


def with_ephemeral(pod: Obj, containers: list[Obj], meta: Obj) -> Obj:
    """The pod with these ephemeral containers, each running at once (what `kubectl debug` waits for)."""
    new = copy.deepcopy(pod)
    new["metadata"] = meta
    new.setdefault("spec", {})["ephemeralContainers"] = containers
    default_containers({"containers": containers})
    now = now_rfc3339()
    known = {s.get("name"): s for s in (new.get("status") or {}).get("ephemeralContainerStatuses") or []}
    statuses = [known.get(c.get("name")) or _container_status(new, c, now, False) for c in containers]
    new.setdefault("status", {})["ephemeralContainerStatuses"] = statuses
    return new


def finished(pod: Obj, code: int) -> Obj:
    """The pod once its main process exited with `code` and its restart policy keeps it down."""
    new = copy.deepcopy(pod)
    now = now_rfc3339()
    reason = "Completed" if code == 0 else "Error"
    status = new.setdefault("status", {})
    status["phase"] = "Succeeded" if code == 0 else "Failed"
    status["conditions"] = [
        {**c, "status": "False", "reason": "PodCompleted"}
        if c.get("type") in ("Ready", "ContainersReady")
        else c
        for c in status.get("conditions") or []
    ]
    for container in status.get("containerStatuses") or []:
        started = ((container.get("state") or {}).get("running") or {}).get("startedAt", now)
        container.update(
            ready=False,
            started=False,
            state={
                "terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now}
            },
        )
    return new
