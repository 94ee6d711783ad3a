"""What one generation of settings builds for the request path (a `Runtime` per cluster), and the
`Serving` requests read it from. SIGHUP builds a new generation and swaps it in at once; a request
reads `Serving.runtime` once, so it never mixes two generations. Built by `guard.process.wiring` only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from multidict import CIMultiDictProxy

from guard.admission.capacity import CapacityGate
from guard.admission.decision import Admission
from guard.admission.shedding import Shedding
from guard.identity.authn import AuthnStats, Credentials
from guard.identity.authz import AuthzStats
from guard.kube.identity import Identity
from guard.kube.requestinfo import RequestInfo
from guard.routing.dispatch import Routes
from guard.settings import Settings
from guard.telemetry.accesslog import AccessLog
from guard.upstream.endpoints import Upstream


class Authenticating(Protocol):
    """The identify step (guard.identity.authn)."""

    stats: AuthnStats

    async def authenticate(self, creds: Credentials) -> Identity: ...


class Impersonating(Protocol):
    """Inbound `Impersonate-*` checked by SubjectAccessReviews (guard.identity.impersonation)."""

    reviews_sent: int

    async def resolve(self, caller: Identity, headers: CIMultiDictProxy[str]) -> Identity: ...


class Authorizing(Protocol):
    """Edge authorization (guard.identity.authz)."""

    stats: AuthzStats

    async def check(self, identity: Identity, info: RequestInfo) -> None: ...


@dataclass(frozen=True)
class Runtime:
    """Everything one generation of settings built; SIGHUP swaps the whole value at once."""

    settings: Settings
    upstream: Upstream
    authenticator: Authenticating
    impersonation: Impersonating
    admission: Admission
    impersonation_headers: Callable[[Identity], Sequence[tuple[str, str]]]
    access_log: AccessLog
    authorizer: Authorizing | None = None
    """Edge authorization (guard.identity.authz); None when the cluster's `authorize` is off."""
    routes: Routes[Runtime] | None = None
    """Every cluster's Runtime and which one serves a request (guard.routing); None: this one."""
    capacity: CapacityGate | None = None
    """The cluster's adaptive concurrency limit (guard.admission.capacity); None: `adaptive` is off."""
    shedding: Shedding | None = None
    """The fleet's emergency-brake orders in force (guard.admission.shedding); None without Redis
    and `redis.publicKey`."""


class Serving:
    """The Runtime in service. Requests read `runtime` once, so a reload never mixes generations."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime


def clusters_of(runtime: Runtime) -> list[Runtime]:
    """Every cluster's Runtime of the generation `runtime` belongs to."""
    return list(runtime.routes.runtimes.values()) if runtime.routes is not None else [runtime]


def in_flight(runtime: Runtime) -> int:
    """Requests still upstream in every cluster of `runtime`'s generation."""
    return sum(ep.in_flight for rt in clusters_of(runtime) for ep in rt.upstream.endpoints)
