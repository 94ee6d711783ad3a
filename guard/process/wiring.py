"""The only place guard's objects are built and wired together.

`build_process_state` makes what lives as long as the process (the quota store and, with `redis:`, the
fleet: leases, quarantine, signed bundles); `build_runtime` turns validated Settings into one
Runtime (upstream pools, authenticator, impersonation check, admission over the shared store,
access log); `build_apps` makes the main and admin aiohttp applications around a Serving so SIGHUP
can swap runtimes while bucket state stays. Nothing else constructs these objects, and this module
must never hold request state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from guard.admission.adaptive import AdaptiveSettings
from guard.admission.capacity import CapacityGate
from guard.admission.config import AdmissionSettings
from guard.admission.controller import AdmissionController
from guard.admission.decision import Admission, AdmitAll
from guard.admission.embedded import EmbeddedStore
from guard.admission.rules import compile_policies
from guard.admission.shares import WorkerShare
from guard.admission.shedding import Shedding
from guard.admission.store import QuotaStore
from guard.federation.bundles import Bundle, bundle_policies
from guard.federation.fleet import Fleet, build_fleet
from guard.federation.quarantine import QuarantineBoard
from guard.identity import authn, authz, impersonation
from guard.policy.loading import load_policies
from guard.policy.model import TenantPolicy
from guard.proxy.runtime import Runtime, Serving, clusters_of
from guard.routing.breaker import EndpointHealth
from guard.routing.dispatch import Routes
from guard.routing.router import Router
from guard.settings import ClusterSettings, Settings
from guard.telemetry.accesslog import AccessLog
from guard.upstream.credentials import resolve_credential
from guard.upstream.endpoints import Upstream
from guard.upstream.probes import HealthChecker
from guard.upstream.reviews import FailoverReviews

log = logging.getLogger(__name__)
REVIEW_TIMEOUT = 10.0
"""Seconds guard waits for a TokenReview or SubjectAccessReview before answering 401/403 → retry."""


class ProcessState:
    """What one process keeps across SIGHUP reloads: the quota store (so buckets do not refill
    on a reload) and, with Redis, the fleet. A pushed bundle's policies replace the files'."""

    def __init__(self, settings: Settings, store: QuotaStore, fleet: Fleet | None = None) -> None:
        self.settings = settings
        self.store = store
        self.fleet = fleet
        self.bundle: list[TenantPolicy] | None = None
        """The live signed bundle's policies, once one was applied."""
        self.serving: Serving | None = None

    @property
    def board(self) -> QuarantineBoard | None:
        return self.fleet.board if self.fleet is not None else None

    @property
    def shedding(self) -> Shedding | None:
        return self.fleet.shedding if self.fleet is not None else None

    @property
    def takes_bundles(self) -> bool:
        return self.fleet is not None and self.fleet.bundles is not None

    def apply_bundle(self, bundle: Bundle) -> None:
        """BundleWatcher's callback: swap the running controller's policies, or raise to refuse."""
        policies, problems = bundle_policies(bundle)
        problems = problems or self._swap(policies)
        if problems:
            raise ValueError("; ".join(problems[:3]))
        self.bundle = policies

    def _swap(self, policies: list[TenantPolicy]) -> list[str]:
        admission = self.serving.runtime.admission if self.serving is not None else None
        if isinstance(admission, AdmissionController):
            return admission.apply(policies)
        # Before the first runtime exists: only check; it will be built from these policies.
        return compile_policies(policies, admission_settings(self.settings), cluster_labels(self.settings))[1]

    async def start(self) -> None:
        await (self.fleet.start() if self.fleet is not None else self.store.start())

    async def close(self) -> None:
        await (self.fleet.close() if self.fleet is not None else self.store.close())


async def build_process_state(settings: Settings, *, workers: int = 1) -> ProcessState:
    """The process-wide store, started. `redis:` set: a fleet replica (`host-pid`) whose buckets
    are global, so `--workers N` are simply N replicas; else the embedded store, split 1/N
    between workers. Redis being down does not fail this (see guard.federation.fleet)."""
    redis = settings.redis
    if redis is not None:
        shared = ProcessState(settings, EmbeddedStore())
        shared.fleet = build_fleet(redis, cluster=settings.cluster.name, apply=shared.apply_bundle)
        shared.store = shared.fleet.store
    else:
        shared = ProcessState(settings, embedded_store(workers))
    await shared.start()
    return shared


def embedded_store(workers: int) -> QuotaStore:
    """The in-process store; with `--workers N` each worker enforces 1/N of every quota."""
    return EmbeddedStore() if workers == 1 else WorkerShare(EmbeddedStore(), workers)


async def build_runtime(settings: Settings, *, workers: int = 1,
                        shared: ProcessState | None = None) -> Runtime:
    """Build one generation of everything that depends on settings. Needs a running loop.

    One Runtime per cluster — its own upstream, reviews, identity cache, impersonation check and
    authorizer — sharing admission and the access log; the default cluster's is returned, and its
    `routes` reach the others. Breaker states of unchanged endpoints carry over from the running
    generation. `workers` is how many processes share the listen port (`guard serve --workers N`);
    `shared` the process's store (a fresh embedded one when not given)."""
    # In a thread: an exec plugin (aws eks get-token) or a credential file read must not stall traffic.
    credentials = {c.name: await asyncio.to_thread(resolve_credential, c) for c in settings.clusters}
    loaded = None
    if settings.policies is not None and (shared is None or shared.bundle is None):
        # Off the event loop too: reading and walking the files must not hold up requests in flight.
        loaded = await asyncio.to_thread(load_policies, [settings.policies])
    admission = build_admission(settings, workers=workers, shared=shared, loaded=loaded)
    identity = settings.identity
    access_log = AccessLog(settings.access_log.path, enabled=settings.access_log.enabled,
                           quiet_tenants=frozenset(settings.access_log.quiet_tenants))
    router = Router([c.name for c in settings.clusters], default=settings.cluster.name,
                    hosts={h: c.name for c in settings.clusters for h in c.hosts})
    routes: Routes[Runtime] = Routes(router, {})
    previous = _breakers(shared)
    gates = _gates(shared)
    for cluster in settings.clusters:
        upstream = Upstream(cluster.name, credentials[cluster.name], health=cluster.health,
                            previous=previous.get(cluster.name))
        reviews = FailoverReviews(upstream, timeout=REVIEW_TIMEOUT)
        authenticator = authn.Authenticator(identity, reviews)
        routes.runtimes[cluster.name] = Runtime(
            settings=settings, upstream=upstream, authenticator=authenticator,
            impersonation=impersonation.ImpersonationCheck(reviews, settings=identity,
                                                           stats=authenticator.stats),
            admission=admission,
            impersonation_headers=impersonation.impersonation_headers,
            authorizer=authz.build_authorizer(cluster.authorize, reviews), access_log=access_log,
            routes=routes, capacity=_gate(cluster, gates.get(cluster.name), workers),
            shedding=shared.shedding if shared is not None else None)
        checker = HealthChecker(upstream)
        checker.start()
        upstream.on_close.append(checker.stop)
        source = credentials[cluster.name].source
        if source is not None:  # a token an exec plugin or auth-provider issued: renew it in time
            source.start()
            upstream.on_close.append(source.stop)
    return routes.default


def _running(shared: ProcessState | None) -> list[Runtime]:
    """Every cluster's Runtime of the generation serving now (none before the first)."""
    serving = shared.serving if shared is not None else None
    return clusters_of(serving.runtime) if serving is not None else []


def _breakers(shared: ProcessState | None) -> dict[str, dict[str, EndpointHealth]]:
    """The running generation's breaker states, by cluster and endpoint URL."""
    return {rt.upstream.name: rt.upstream.states() for rt in _running(shared)}


def _gates(shared: ProcessState | None) -> dict[str, CapacityGate]:
    """The running generation's adaptive limits by cluster: what they learnt survives a reload."""
    return {rt.upstream.name: rt.capacity for rt in _running(shared) if rt.capacity is not None}


def _gate(cluster: ClusterSettings, running: CapacityGate | None, workers: int) -> CapacityGate | None:
    """The cluster's adaptive limit, its bounds split between `workers` processes like the quotas;
    the running one reconfigured, so what it learnt stays; None when `adaptive` is off."""
    if not cluster.adaptive.enabled:
        return None
    settings = per_worker(cluster.adaptive, workers)
    if running is None:
        return CapacityGate(cluster.name, settings)
    running.configure(settings)
    return running


def per_worker(settings: AdaptiveSettings, workers: int) -> AdaptiveSettings:
    """min, initial and max of one of `workers` processes: a share, rounded up, at least 1."""
    if workers <= 1:
        return settings
    low, initial, high = (max(1, -(-n // workers)) for n in (settings.min, settings.initial, settings.max))
    return dataclasses.replace(settings, min=low, initial=initial, max=high)


def build_admission(settings: Settings, *, workers: int = 1, shared: ProcessState | None = None,
                    loaded: tuple[list[TenantPolicy], list[str]] | None = None) -> Admission:
    """Admission for these settings over the shared store: the live signed bundle's policies when
    there is one, else the policy files (`loaded`: already read, with their problems).
    ConfigError lists every problem.

    With N workers on the embedded store each enforces 1/N of every quota (see guard.process.workers)."""
    if shared is None:
        shared = ProcessState(settings, embedded_store(workers))
    if settings.policies is None and settings.admission is None and not shared.takes_bundles:
        return AdmitAll()
    admission = admission_settings(settings)
    clusters = cluster_labels(settings)
    if shared.bundle is not None:
        return AdmissionController.from_policies(shared.bundle, admission, shared.store,
                                                 isolation=shared.board, clusters=clusters)
    if loaded is not None:
        policies, problems = loaded
        return AdmissionController.from_policies(policies, admission, shared.store, isolation=shared.board,
                                                 problems=problems, clusters=clusters)
    paths = [settings.policies] if settings.policies is not None else []
    return AdmissionController.from_paths(paths, admission, shared.store, isolation=shared.board,
                                          clusters=clusters)


def cluster_labels(settings: Settings) -> dict[str, dict[str, str]]:
    """Each cluster this process fronts and its labels: what placement and overrides select on."""
    return {c.name: dict(c.labels) for c in settings.clusters}


def admission_settings(settings: Settings) -> AdmissionSettings:
    return settings.admission or AdmissionSettings()


async def close_runtime(runtime: Runtime) -> None:
    for rt in clusters_of(runtime):
        await rt.upstream.close()
    runtime.access_log.close()
