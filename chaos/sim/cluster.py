"""The objects a fresh kind-sized 1.32 cluster holds besides RBAC: nodes and their leases, the
`kubernetes` Service, APIServices, priority classes, a default StorageClass, flow-control
defaults, component statuses, each namespace's `default` ServiceAccount,
and (with --system-pods) the kube-system workloads whose pods clients look for.

It must never be used once the simulator serves traffic except for `namespace_objects`, which the
write path calls when a namespace is created.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from chaos.sim.kinds import TABLE
from chaos.sim.pods import NODES
from chaos.sim.store import now_rfc3339

Obj = dict[str, Any]


def namespace_objects(namespace: str) -> list[Obj]:
    """Each namespace's `default` ServiceAccount. (Real namespaces also get a kube-root-ca.crt ConfigMap;
    it is left out so that a namespace's ConfigMaps are the ones its users made, which tests count.)"""
    meta = {"name": "default", "namespace": namespace}
    return [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}]


def _node(name: str, ip: str, cidr: str, role: str) -> Obj:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
    }
    spec: Obj = {
        "podCIDR": f"{cidr}.0/24",
        "podCIDRs": [f"{cidr}.0/24"],
        "providerID": f"kind://docker/sim/{name}",
    }
    if role:
        labels[f"node-role.kubernetes.io/{role}"] = ""
    now = now_rfc3339()
    conditions = [
        {
            "type": t,
            "status": "True" if t == "Ready" else "False",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
            "reason": r,
            "message": m,
        }
        for t, r, m in _NODE_CONDITIONS
    ]
    addresses = [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]
    status = {
        "capacity": _RESOURCES,
        "allocatable": _RESOURCES,
        "conditions": conditions,
        "addresses": addresses,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": _NODE_INFO,
    }
    meta = {"name": name, "labels": labels}
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec, "status": status}


_NODE_CONDITIONS = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "KubeletReady", "kubelet is posting ready status"),
)
_RESOURCES = {
    "cpu": "8",
    "memory": "32858676Ki",
    "pods": "110",
    "ephemeral-storage": "102626232Ki",
    "hugepages-1Gi": "0",
    "hugepages-2Mi": "0",
}
_NODE_INFO = {
    "machineID": "0" * 32,
    "systemUUID": "0" * 32,
    "bootID": "0" * 32,
    "kernelVersion": "6.1.0",
    "osImage": "Debian GNU/Linux 12 (bookworm)",
    "containerRuntimeVersion": "containerd://1.7.24",
    "kubeletVersion": "v1.32.0",
    "kubeProxyVersion": "v1.32.0",
    "operatingSystem": "linux",
    "architecture": "amd64",
}


def _lease(node: str) -> Obj:
    spec = {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now_rfc3339(micro=True)}
    meta = {"name": node, "namespace": "kube-node-lease"}
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}


def _api_service(group: str, version: str, priority: int) -> Obj:
    available = {
        "type": "Available",
        "status": "True",
        "reason": "Local",
        "lastTransitionTime": now_rfc3339(),
        "message": "Local APIServices are always available",
    }
    meta = {"name": f"{version}.{group}", "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}}
    spec = {
        "group": group,
        "version": version,
        "groupPriorityMinimum": 18000,
        "versionPriority": 15 - priority,
    }
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": meta,
        "spec": spec,
        "status": {"conditions": [available]},
    }


def infrastructure() -> list[Obj]:
    """Nodes, their leases and CSI nodes, APIServices, and the fixed objects of the YAML file."""
    nodes = [_node(*n) for n in NODES]
    csinodes = [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "CSINode",
            "metadata": {"name": n[0]},
            "spec": {"drivers": []},
        }
        for n in NODES
    ]
    leases = [_lease(n[0]) for n in NODES]
    services = [_api_service(g, v, i) for g, vs in TABLE.group_versions().items() for i, v in enumerate(vs)]
    return [*nodes, *leases, *csinodes, *services, *_read("cluster-infrastructure.yaml")]


def system_workloads() -> list[Obj]:
    """kube-system as kind makes it: CoreDNS, kube-proxy on every node, the control plane's static pods."""
    return _read("cluster-system.yaml")


def _read(name: str) -> list[Obj]:
    text = resources.files("chaos.sim").joinpath(name).read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]
