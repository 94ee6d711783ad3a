"""The control loops of the simulated cluster: workload controllers, garbage collection and node
heartbeats, driven by the store's writes.

Every write of a workload, or of an object a workload owns, queues that workload; the queue drains
on the event loop right after the request that caused it (or at once when there is no loop, as at
start-up), so a Deployment has its ReplicaSet, Pods and status a moment after it is created.
Deleting an owner deletes what it owns (background propagation). A new pod's kubelet starts it
after `START_S`; a pod deleted with a grace period is Terminating for `TERMINATE_S` at most. A
write of anything else costs a few look-ups: the chaos floods' pods are seeded Running and owned
by nobody, and must not pay for this. It must never call a reconcile step from inside a store
write (they queue instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from chaos.sim import pods, sets, workloads
from chaos.sim.kinds import TABLE, Kind
from chaos.sim.store import Store, now_rfc3339

log = logging.getLogger("chaos.sim.controllers")
Obj = dict[str, Any]
Step = Callable[[Store, Kind, Obj], None]
STEPS: dict[tuple[str, str], Step] = {
    ("apps", "deployments"): workloads.deployment,
    ("apps", "replicasets"): workloads.replicaset,
    ("apps", "statefulsets"): sets.statefulset,
    ("apps", "daemonsets"): sets.daemonset,
    ("", "replicationcontrollers"): workloads.replicaset,
    ("batch", "jobs"): sets.job,
}
_BY_KIND_NAME = {TABLE.lookup(g, "v1", r).kind: TABLE.lookup(g, "v1", r) for g, r in STEPS}  # type: ignore[union-attr]
POD = TABLE.lookup("", "v1", "pods")
START_S = 0.5
"""How long a new pod's kubelet takes to start its containers (Pending → Running)."""
TERMINATE_S = 1.0
"""The longest a deleted pod stays Terminating (its grace period, shortened for a test bed)."""
MAX_STEPS = 10_000
"""A drain that needs more steps than this is a controller fighting itself: it stops there."""
LEASE_RENEW_S = 10.0


class Controllers:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: dict[tuple[tuple[str, str], str, str], None] = {}
        self.gone: list[tuple[str, str]] = []
        self.deferred: list[Callable[[], None]] = []
        self.dependents: dict[str, dict[tuple[Kind, str, str], None]] = {}
        """Owner uid -> the objects whose ownerReferences name it (what the garbage collector deletes)."""
        self._scheduled = False
        store.listeners.append(self.changed)

    def changed(self, kind: Kind, type_: str, obj: Obj) -> None:
        meta = obj["metadata"]
        if type_ == "ADDED" and kind is POD and pods.pending(obj):
            key = (meta.get("namespace", ""), meta["name"], meta["uid"])
            self.later(START_S, lambda: self._start_pod(*key))
        if kind.key in STEPS and type_ != "DELETED":
            self.pending[(kind.key, meta.get("namespace", ""), meta["name"])] = None
        if type_ == "DELETED" and meta.get("uid") in self.dependents:
            self.gone.append((meta.get("namespace", ""), meta["uid"]))
        for ref in meta.get("ownerReferences") or ():
            dependent = (kind, meta.get("namespace", ""), meta["name"])
            if type_ == "DELETED":
                self.dependents.get(ref.get("uid", ""), {}).pop(dependent, None)
            else:
                self.dependents.setdefault(ref.get("uid", ""), {})[dependent] = None
            owner = _BY_KIND_NAME.get(ref.get("kind", ""))
            if owner is not None:
                self.pending[(owner.key, meta.get("namespace", ""), ref.get("name", ""))] = None
        if self.pending or self.gone:
            self._schedule()

    def later(self, delay: float, action: Callable[[], None]) -> None:
        """Run `action` after `delay` on the event loop, or as the next drain step without one."""
        try:
            asyncio.get_running_loop().call_later(delay, action)
        except RuntimeError:
            self.deferred.append(action)

    def _start_pod(self, namespace: str, name: str, uid: str) -> None:
        assert POD is not None
        pod = self.store.find(POD, namespace, name)
        if pod is not None and pod["metadata"]["uid"] == uid and pods.pending(pod):
            self.store.update(POD, namespace, name, pods.running(pod))

    def terminate(self, kind: Kind, pod: Obj, grace: int) -> Obj:
        """Delete a pod gracefully: Terminating now, gone once its (shortened) grace period ends."""
        meta = pod["metadata"]
        namespace, name, uid = meta.get("namespace", ""), meta["name"], meta["uid"]
        marked = self.store.update(kind, namespace, name, pods.terminating(pod, grace))

        def finish() -> None:
            current = self.store.find(kind, namespace, name)
            if current is not None and current["metadata"]["uid"] == uid:
                self.store.delete(kind, namespace, name)

        self.later(min(float(grace), TERMINATE_S), finish)
        return marked

    def _schedule(self) -> None:
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (start-up): whoever populates the store calls drain()
        self._scheduled = True
        loop.call_soon(self.drain)

    def drain(self) -> None:
        self._scheduled = False
        for _ in range(MAX_STEPS):
            if self.deferred:
                self.deferred.pop(0)()
            elif self.gone:
                self._collect(*self.gone.pop(0))
            elif self.pending:
                key = next(iter(self.pending))
                del self.pending[key]
                self._reconcile(*key)
            else:
                return

    def _reconcile(self, key: tuple[str, str], namespace: str, name: str) -> None:
        kind = next(k for k in _BY_KIND_NAME.values() if k.key == key)
        obj = self.store.find(kind, namespace, name)
        if obj is None or obj.get("spec") is None:
            return
        try:
            STEPS[key](self.store, kind, obj)
        except Exception:  # one broken object must not stop the others' reconciling
            log.exception("reconciling %s %s/%s failed", kind.kind, namespace, name)

    def _collect(self, namespace: str, uid: str) -> None:
        """Delete what the deleted owner `uid` owned (its dependents' deletions cascade in turn)."""
        for kind, dep_namespace, name in list(self.dependents.pop(uid, {})):
            with contextlib.suppress(Exception):
                self.store.delete(kind, dep_namespace, name)


async def heartbeat(store: Store, *, every: float = LEASE_RENEW_S) -> None:
    """Renew every node's Lease in kube-node-lease, as each kubelet does every 10 seconds."""
    leases = TABLE.lookup("coordination.k8s.io", "v1", "leases")
    assert leases is not None
    while True:
        await asyncio.sleep(every)
        for _, lease in store.items(leases, "kube-node-lease"):
            spec = {**lease.get("spec", {}), "renewTime": now_rfc3339(micro=True)}
            store.update(leases, "kube-node-lease", lease["metadata"]["name"], {**lease, "spec": spec})
