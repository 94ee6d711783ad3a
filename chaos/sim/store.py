"""The object store shared by every replica: objects by kind, one resourceVersion counter, an event
window for watches.

Writes are synchronous (one event loop, so each is atomic), stamp a new resourceVersion and append a
watch event that every live watcher of that kind receives. It must never do HTTP or authorization;
it raises `StatusError` only for the storage conflicts the api-server reports (not found, exists,
stale resourceVersion).
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chaos.sim.kinds import Kind
from chaos.sim.status import already_exists, conflict, expired, not_found

Obj = dict[str, Any]
ObjKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds
_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # the api-server's generateName alphabet


def now_rfc3339(*, micro: bool = False) -> str:
    """Now as the api-server writes a Time (seconds) or a MicroTime (microseconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    kind_key: tuple[str, str]
    obj: Obj


@dataclass(eq=False)
class Watcher:
    kind_key: tuple[str, str]
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)


class Store:
    def __init__(self, *, window: int = 1000, clock: Callable[[], str] = now_rfc3339) -> None:
        self.rv = 1
        self.window = window
        self.clock = clock
        self.objects: dict[tuple[str, str], dict[ObjKey, Obj]] = {}
        self.events: deque[Event] = deque(maxlen=window)
        self.watchers: set[Watcher] = set()
        self.generated = 0
        self.listeners: list[Callable[[Kind, str, Obj], None]] = []
        """Called after every write with (kind, event type, object): the controllers' trigger."""

    # -- reads ---------------------------------------------------------------------------------
    def bucket(self, kind: Kind) -> dict[ObjKey, Obj]:
        return self.objects.setdefault(kind.key, {})

    def get(self, kind: Kind, namespace: str, name: str) -> Obj:
        obj = self.bucket(kind).get((namespace, name))
        if obj is None:
            raise not_found(kind.resource, kind.group, name)
        return obj

    def find(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        return self.bucket(kind).get((namespace, name))

    def items(self, kind: Kind, namespace: str = "") -> list[tuple[ObjKey, Obj]]:
        """Objects of a kind, in (namespace, name) order, optionally in one namespace."""
        bucket = self.bucket(kind)
        keys = sorted(k for k in bucket if not namespace or k[0] == namespace)
        return [(k, bucket[k]) for k in keys]

    def oldest_resumable(self) -> int:
        """The smallest resourceVersion a watch may resume from without 410 Gone."""
        if len(self.events) < self.window:
            return 0
        return self.events[0].rv - 1

    def check_resumable(self, rv: int) -> None:
        if rv < self.oldest_resumable():
            raise expired(f"too old resource version: {rv} ({self.oldest_resumable() + 1})")

    def events_since(self, kind: Kind, rv: int) -> list[Event]:
        self.check_resumable(rv)
        return [e for e in self.events if e.rv > rv and e.kind_key == kind.key]

    # -- writes --------------------------------------------------------------------------------
    def _stamp(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _publish(self, kind: Kind, type_: str, obj: Obj) -> None:
        event = Event(self.rv, type_, kind.key, obj)
        self.events.append(event)
        for watcher in self.watchers:
            if watcher.kind_key == kind.key:
                watcher.queue.put_nowait(event)
        for listener in self.listeners:
            listener(kind, type_, obj)

    def prepare_create(self, kind: Kind, namespace: str, obj: Obj) -> Obj:
        """Fill in server-set metadata; raises AlreadyExists. Does not store (dryRun uses it alone)."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            self.generated += 1
            meta["name"] = meta["generateName"] + "".join(secrets.choice(_SUFFIX) for _ in range(5))
        name = meta.get("name", "")
        if (namespace, name) in self.bucket(kind):
            raise already_exists(kind.resource, kind.group, name)
        if kind.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = self.clock()
        meta.pop("resourceVersion", None)
        meta.pop("deletionTimestamp", None)
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        return obj

    def create(self, kind: Kind, namespace: str, obj: Obj) -> Obj:
        return self.insert(kind, namespace, self.prepare_create(kind, namespace, obj))

    def insert(self, kind: Kind, namespace: str, obj: Obj) -> Obj:
        """Store an object made by `prepare_create`, stamping its resourceVersion."""
        if (namespace, obj["metadata"]["name"]) in self.bucket(kind):
            raise already_exists(kind.resource, kind.group, obj["metadata"]["name"])
        obj["metadata"]["resourceVersion"] = self._stamp()
        self.bucket(kind)[(namespace, obj["metadata"]["name"])] = obj
        self._publish(kind, "ADDED", obj)
        return obj

    def check_update(self, kind: Kind, namespace: str, name: str, obj: Obj) -> Obj:
        """The current object, after checking the optimistic-concurrency precondition of `obj`."""
        current = self.get(kind, namespace, name)
        wanted = (obj.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise conflict(kind.resource, kind.group, name)
        return current

    def update(self, kind: Kind, namespace: str, name: str, obj: Obj) -> Obj:
        current = self.check_update(kind, namespace, name, obj)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        for kept in ("uid", "creationTimestamp", "name", "namespace"):
            if kept in current["metadata"]:
                meta[kept] = current["metadata"][kept]
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        meta["resourceVersion"] = self._stamp()
        self.bucket(kind)[(namespace, name)] = obj
        self._publish(kind, "MODIFIED", obj)
        return obj

    def delete(self, kind: Kind, namespace: str, name: str) -> Obj:
        obj = self.get(kind, namespace, name)
        del self.bucket(kind)[(namespace, name)]
        # The DELETED event carries the object at the resourceVersion of its deletion.
        gone = {**obj, "metadata": {**obj["metadata"], "resourceVersion": self._stamp()}}
        self._publish(kind, "DELETED", gone)
        return gone

    # -- watchers ------------------------------------------------------------------------------
    def subscribe(self, kind: Kind) -> Watcher:
        watcher = Watcher(kind.key)
        self.watchers.add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)
