"""What guard shows of a running process: the admin application (/metrics, /healthz, /readyz, the
debug pages) and the metric sources it reads at scrape time, wired to whichever runtime is serving.

Everything here reads state at scrape or page time through callables over `Serving`, so a reload
needs no re-registration and the request path pays nothing. It must never hold request state or
show a secret (guard.telemetry.admin redacts).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable

from aiohttp import web

from guard.admission.capacity import CapacityGate
from guard.identity import authz
from guard.process.wiring import ProcessState
from guard.proxy.pipeline import Proxy
from guard.proxy.runtime import Runtime, Serving, clusters_of
from guard.settings import ClusterSettings
from guard.settings.model import DebugAccess
from guard.telemetry import admin
from guard.telemetry.metrics import EndpointFigures, GuardMetrics
from guard.upstream.endpoints import Endpoint


def build_apps(serving: Serving, metrics: GuardMetrics, pages: admin.AdminPages, *,
               shared: ProcessState | None = None) -> tuple[web.Application, Proxy]:
    """The admin application and the proxy (the main listener's one handler, see guard.http.server)."""
    proxy = Proxy(serving, metrics)
    if shared is not None:
        shared.serving = serving  # pushed bundles go to whichever runtime is current
        _fleet_counters(shared, metrics)
        _shed_page(shared, pages)
        _share_health(shared, serving, metrics)
    metrics.add_counters(_authn_stats(serving), "guard_identity", "Identity step counters")
    metrics.add_counters(_authz_counters(serving), "guard_authz", "Edge authorization counters")
    _admission_pages(serving, pages)
    _adaptive_pages(serving, pages, metrics)
    _routing_pages(serving, pages, metrics)
    admin_app = admin.build_admin_app(metrics, pages, lambda: serving.runtime.settings,
                                      lambda: _ready(serving), debug_access=lambda: _debug_access(serving))
    return admin_app, proxy


def _fleet_counters(shared: ProcessState, metrics: GuardMetrics) -> None:
    fleet = shared.fleet
    if fleet is None:
        return
    metrics.add_counters(fleet.store.counters, "guard_federation", "Redis lease store counters")
    metrics.add_counters(fleet.board.counters, "guard_quarantine", "Runaway quarantine counters")
    if fleet.bundles is not None:
        metrics.add_counters(fleet.counters, "guard_bundles", "Signed policy bundle counters")
    shedding = fleet.shedding
    if shedding is not None:
        metrics.add_counters(shedding.counters, "guard_shed", "Emergency-brake shed order counters")


def _shed_page(shared: ProcessState, pages: admin.AdminPages) -> None:
    """/debug/guard/shed: the emergency-brake orders this replica holds (guard.admission.shedding)."""
    shedding = shared.shedding
    if shedding is not None:
        pages.add("shed", shedding.snapshot)


def _share_health(shared: ProcessState, serving: Serving, metrics: GuardMetrics) -> None:
    """With Redis: publish and fold the running generation's endpoints (guard.federation.health)."""
    health = shared.fleet.health if shared.fleet is not None else None
    if health is None:
        return
    health.watch(lambda: [(rt.upstream.name, rt.upstream.endpoints) for rt in clusters_of(serving.runtime)])
    metrics.add_counters(health.counters, "guard_federation_health", "ProcessState cluster health exchanges")


def _admission_pages(serving: Serving, pages: admin.AdminPages) -> None:
    """/debug/guard/buckets, /queues and /policies: the admission controller's dumps."""
    pages.add("buckets", lambda: serving.runtime.admission.snapshot_buckets())
    pages.add("queues", lambda: serving.runtime.admission.snapshot_queues())
    pages.add("policies", lambda: admin.policies_view(serving.runtime.admission))


def _adaptive_pages(serving: Serving, pages: admin.AdminPages, metrics: GuardMetrics) -> None:
    """/debug/guard/adaptive and the guard_upstream_concurrency_* metrics: every cluster's limit."""
    def gates() -> list[CapacityGate]:
        return [rt.capacity for rt in clusters_of(serving.runtime) if rt.capacity is not None]

    def page() -> object:
        return [rt.capacity.snapshot() if rt.capacity is not None else {"cluster": rt.upstream.name,
                                                                         "enabled": False}
                for rt in clusters_of(serving.runtime)]
    pages.add("adaptive", page)
    metrics.watch_capacity(gates)


def _routing_pages(serving: Serving, pages: admin.AdminPages, metrics: GuardMetrics) -> None:
    """/debug/guard/upstreams and the guard_upstream_endpoint_* metrics: every cluster's endpoints."""
    def upstreams() -> object:
        current = serving.runtime
        routes = current.routes
        return {"default": routes.router.default.cluster if routes is not None else current.upstream.name,
                "clusters": [dict(rt.upstream.snapshot(), hosts=list(_cluster_settings(rt).hosts),
                                  health=dataclasses.asdict(_cluster_settings(rt).health))
                             for rt in clusters_of(current)]}

    def figures() -> list[EndpointFigures]:
        return [_figures(rt.upstream.name, ep)
                for rt in clusters_of(serving.runtime) for ep in rt.upstream.endpoints]
    pages.add("upstreams", upstreams)
    metrics.watch_endpoints(figures)


def _figures(cluster: str, ep: Endpoint) -> EndpointFigures:
    health, fleet = ep.health, ep.health.fleet
    return EndpointFigures(cluster, ep.url, health.up, health.weight(ep.clock()), ep.in_flight,
                           health.failures, health.opens, fleet.replicas if fleet else 0,
                           fleet.open if fleet else 0, fleet.in_flight if fleet else 0, health.fleet_opens)


def _cluster_settings(runtime: Runtime) -> ClusterSettings:
    return next(c for c in runtime.settings.clusters if c.name == runtime.upstream.name)


def _authn_stats(serving: Serving) -> Callable[[], dict[str, int]]:
    """Identity counters summed over every cluster's authenticator and impersonation check."""
    def read() -> dict[str, int]:
        counters: Counter[str] = Counter()
        for rt in clusters_of(serving.runtime):
            counters.update(dict(vars(rt.authenticator.stats)))
            counters["subject_access_reviews"] += rt.impersonation.reviews_sent
        return dict(counters)
    return read


def _authz_counters(serving: Serving) -> Callable[[], dict[str, int]]:
    def read() -> dict[str, int]:
        counters: Counter[str] = Counter()
        for rt in clusters_of(serving.runtime):
            counters.update(authz.counters(rt.authorizer.stats if rt.authorizer is not None else None))
        return dict(counters)
    return read


def _debug_access(serving: Serving) -> DebugAccess:
    """`admin.debug` of the settings in force (a SIGHUP may change it)."""
    settings = serving.runtime.settings.admin
    return settings.debug if settings is not None else "loopback"


async def _ready(serving: Serving) -> bool:
    """Ready while any endpoint of any cluster answers: one cluster being down must not take guard
    out of service for the others."""
    for rt in clusters_of(serving.runtime):
        upstream = rt.upstream
        sessions = [(ep.session, ep.url) for ep in upstream.endpoints]
        if await admin.any_endpoint_ready(sessions, upstream.credential.headers()):
            return True
    return False
