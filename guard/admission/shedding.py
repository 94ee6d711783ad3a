"""The fleet's emergency brake on the request path: refuse what a shed order names.

An operator's `guard fleet shed` writes a signed `ShedOrder` (guard.federation.shedding verifies and
delivers it); `Shedding` holds the orders in force on this replica, and the pipeline asks it about
every request before admission (`Proxy._serve`), so shed traffic costs no quota and never queues.
An order names clusters and, within them, tenants, users, verbs and resources (each a list, any one
of which matches; the dimensions must all match), or `everything`. A request the admission rules
treat as exempt (system:masters, node heartbeats, leader election: `admission.exempt`) is never
shed. An order ends at its expiry or when lifted. Pure: no I/O, the wall clock injected; with no
order in force a request costs one attribute read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from guard.admission.decision import Admission
from guard.kube.errors import ServiceUnavailable, TooManyRequests
from guard.kube.identity import Identity
from guard.kube.requestinfo import RequestInfo

MAX_DURATION = 24 * 3600.0
"""The longest an order may last (seconds): an order always ends by itself."""
MAX_ORDERS = 100
"""Orders one replica keeps in force at once; more are refused (and counted)."""
MAX_ENTRIES = 100
"""Values one dimension of an order may list."""
MAX_REASON = 300
"""Characters of a reason (it is sent to every refused client)."""
MAX_RETRY_AFTER = 60
ANY_CLUSTER = "*"


class OrderInvalid(ValueError):
    """A decoded order that is not one guard will apply (its message says which field)."""


@dataclass(frozen=True)
class ShedOrder:
    """One emergency-brake order, as signed. Times are Unix seconds (the fleet shares a clock)."""

    id: str
    clusters: tuple[str, ...]
    reason: str
    issued: float
    expires: float
    tenants: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    everything: bool = False
    by: str = ""
    """Who issued it (the operator's login, as the CLI saw it)."""
    lifted: float = 0.0
    """When `guard fleet lift` ended it (0: not lifted). A lifted order is signed again."""

    def payload(self) -> bytes:
        """The exact bytes that are signed: canonical JSON."""
        body = {"id": self.id, "clusters": list(self.clusters), "reason": self.reason,
                "issued": self.issued, "expires": self.expires, "tenants": list(self.tenants),
                "users": list(self.users), "verbs": list(self.verbs), "resources": list(self.resources),
                "everything": self.everything, "by": self.by, "lifted": self.lifted}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> ShedOrder:
        """The order in `payload`; raises OrderInvalid naming the field at fault."""
        try:
            data = json.loads(payload)
        except ValueError as e:
            raise OrderInvalid("not JSON") from e
        if not isinstance(data, dict):
            raise OrderInvalid("not a JSON object")
        order = cls(id=_text(data, "id"), clusters=_texts(data, "clusters"), reason=_text(data, "reason"),
                    issued=_number(data, "issued"), expires=_number(data, "expires"),
                    tenants=_texts(data, "tenants"), users=_texts(data, "users"), verbs=_texts(data, "verbs"),
                    resources=_texts(data, "resources"), everything=data.get("everything") is True,
                    by=str(data.get("by", "")), lifted=_number(data, "lifted", 0.0))
        order.check()
        return order

    def check(self) -> None:
        """Raise OrderInvalid when the order is not bounded, not aimed or not explained."""
        if not self.id or len(self.id) > 64:
            raise OrderInvalid("id: must be 1 to 64 characters")
        if not self.clusters:
            raise OrderInvalid("clusters: must name at least one cluster (or *)")
        if not self.reason.strip() or len(self.reason) > MAX_REASON:
            raise OrderInvalid(f"reason: must be 1 to {MAX_REASON} characters")
        if not 0 < self.expires - self.issued <= MAX_DURATION:
            raise OrderInvalid(f"expires: must be after issued, by at most {MAX_DURATION:.0f} s")
        if self.everything == bool(self.selectors):
            raise OrderInvalid("everything: an order sheds everything or names tenants, users, "
                               "verbs or resources, not both and not neither")
        if any(len(values) > MAX_ENTRIES for values in (self.clusters, *self.selectors)):
            raise OrderInvalid(f"a dimension lists more than {MAX_ENTRIES} values")

    @property
    def selectors(self) -> tuple[tuple[str, ...], ...]:
        return tuple(v for v in (self.tenants, self.users, self.verbs, self.resources) if v)

    def in_force(self, now: float) -> bool:
        return not self.lifted and self.issued - 60 <= now < self.expires

    def aims_at(self, cluster: str) -> bool:
        return ANY_CLUSTER in self.clusters or cluster in self.clusters

    def names(self, identity: Identity, info: RequestInfo, tenant: str) -> bool:
        """Whether the order covers this (non-exempt) request on a cluster it aims at."""
        if self.everything:
            return True
        return ((not self.tenants or tenant in self.tenants)
                and (not self.users or identity.user in self.users)
                and (not self.verbs or info.verb in self.verbs)
                and (not self.resources or _resource_named(info, self.resources)))

    def lift(self, at: float) -> ShedOrder:
        return replace(self, lifted=at)

    def describe(self) -> str:
        """One line for logs and `guard fleet list`: what it names (never a token: users are names)."""
        if self.everything:
            what = "everything but exempt traffic"
        else:
            parts = [f"{label}={','.join(values)}" for label, values in
                     (("tenant", self.tenants), ("user", self.users), ("verb", self.verbs),
                      ("resource", self.resources)) if values]
            what = " ".join(parts)
        return f"clusters={','.join(self.clusters)} {what}"

    def refusal(self, now: float) -> TooManyRequests | ServiceUnavailable:
        """What a refused client gets: 503 for `everything`, else 429; the message names the reason."""
        retry = max(1, min(MAX_RETRY_AFTER, int(self.expires - now) + 1))
        message = f"Refused by the fleet's emergency brake (order {self.id}): {self.reason}"
        if self.everything:
            return ServiceUnavailable(message, retry_after=retry)
        return TooManyRequests(message, retry_after=retry)


def _resource_named(info: RequestInfo, resources: tuple[str, ...]) -> bool:
    if not info.is_resource_request:
        return False
    full = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
    return info.resource in resources or full in resources


def _text(data: dict[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise OrderInvalid(f"{key}: must be a string")
    return value


def _texts(data: dict[str, object], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise OrderInvalid(f"{key}: must be a list of non-empty strings")
    return tuple(value)


def _number(data: dict[str, object], key: str, default: float | None = None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OrderInvalid(f"{key}: must be a number")
    return float(value)


@dataclass
class ShedStats:
    """Counters for /metrics (`guard_shed_*`); `orders` (in force) is a level."""

    refusals: int = 0
    """Requests refused by an order."""
    orders_refused: int = 0
    """Orders refused: bad signature, malformed, unbounded, or too many."""
    orders_taken: int = 0
    orders_lifted: int = 0
    orders_expired: int = 0
    by_cluster: dict[str, int] = field(default_factory=dict)
    """Requests refused per cluster (for the debug page)."""


class Shedding:
    """The orders in force on this replica, swapped whole by the federation side."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.orders: tuple[ShedOrder, ...] = ()
        self.refused_by: dict[str, int] = {}
        """Requests each order in force refused here."""
        self.stats = ShedStats()
        self._clock = clock

    def replace(self, orders: Iterable[ShedOrder]) -> None:
        self.orders = tuple(orders)
        live = {o.id for o in self.orders}
        self.refused_by = {k: v for k, v in self.refused_by.items() if k in live}

    def refusal(self, identity: Identity, info: RequestInfo, cluster: str,
                admission: Admission) -> TooManyRequests | ServiceUnavailable | None:
        """The refusal of the first order in force that names this request, counted; None when no
        order does. `admission` says the request's tenant, or that it is exempt (never shed)."""
        if not self.orders:
            return None
        now = self._clock()
        aimed = [o for o in self.orders if o.aims_at(cluster) and o.in_force(now)]
        tenant = admission.tenant_of(identity, info, cluster) if aimed else None
        if tenant is None:
            return None
        for order in aimed:
            if order.names(identity, info, tenant):
                self.stats.refusals += 1
                self.refused_by[order.id] = self.refused_by.get(order.id, 0) + 1
                self.stats.by_cluster[cluster] = self.stats.by_cluster.get(cluster, 0) + 1
                return order.refusal(now)
        return None

    def counters(self) -> dict[str, int]:
        now = self._clock()
        return {"orders": sum(o.in_force(now) for o in self.orders), "refusals": self.stats.refusals,
                "orders_refused": self.stats.orders_refused, "orders_taken": self.stats.orders_taken,
                "orders_lifted": self.stats.orders_lifted, "orders_expired": self.stats.orders_expired}

    def snapshot(self) -> dict[str, object]:
        """/debug/guard/shed."""
        now = self._clock()
        return {"orders": [dict(json.loads(o.payload()), in_force=o.in_force(now),
                                remaining=max(0.0, round(o.expires - now, 1)),
                                refused_here=self.refused_by.get(o.id, 0)) for o in self.orders],
                "refused_by_cluster": dict(self.stats.by_cluster), "counters": self.counters()}
