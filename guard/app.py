"""The only place guard's objects are built and wired together.

`build_runtime` turns validated Settings into one Runtime (upstream pools, authenticator,
impersonation check, admission, access log); `build_apps` makes the main and admin aiohttp
applications around a Holder so SIGHUP can swap runtimes. Nothing else constructs these objects,
and this module must never hold request state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aiohttp
from aiohttp import web

from guard import admin, authn, impersonation
from guard.accesslog import AccessLog
from guard.admission.buckets import EmbeddedStore
from guard.admission.config import AdmissionSettings
from guard.admission.controller import AdmissionController
from guard.admission.decision import Admission, AdmitAll
from guard.admission.store import QuotaStore
from guard.metrics import GuardMetrics
from guard.pipeline import Holder, Proxy, Runtime
from guard.settings import Settings
from guard.upstream import FailoverReviews, Upstream, resolve_credential
from guard.workers import SharedQuota

log = logging.getLogger("guard.app")
REVIEW_TIMEOUT = 10.0
"""Seconds guard waits for a TokenReview or SubjectAccessReview before answering 401/403 → retry."""


async def build_runtime(settings: Settings, *, workers: int = 1) -> Runtime:
    """Build one generation of everything that depends on settings. Needs a running loop.

    `workers` is how many processes share the listen port (`guard serve --workers N`)."""
    cluster = settings.cluster
    upstream = Upstream(cluster.name, resolve_credential(cluster))
    reviews = FailoverReviews(upstream, timeout=REVIEW_TIMEOUT)
    identity = settings.identity if isinstance(settings.identity, authn.IdentitySettings) \
        else authn.IdentitySettings()
    return Runtime(
        settings=settings,
        upstream=upstream,
        authenticator=authn.Authenticator(identity, reviews),
        impersonation=impersonation.ImpersonationCheck(reviews),
        admission=build_admission(settings, workers=workers),
        impersonation_headers=impersonation.impersonation_headers,
        access_log=AccessLog(settings.access_log.path, enabled=settings.access_log.enabled),
        timeouts=(
            aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=settings.limits.request_timeout),
            aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=None),
        ),
    )


def build_admission(settings: Settings, *, workers: int = 1) -> Admission:
    """Admission for these settings. The admission controller plugs in here (policies, admission:).

    With N workers on the embedded store each enforces 1/N of every quota (see guard.workers)."""
    if settings.policies is None and settings.admission is None:
        return AdmitAll()
    admission = settings.admission
    if not isinstance(admission, AdmissionSettings):
        admission = AdmissionSettings()
    paths = [settings.policies] if settings.policies is not None else []
    store: QuotaStore = EmbeddedStore() if workers == 1 else SharedQuota(EmbeddedStore(), workers)
    return AdmissionController.from_paths(paths, admission, store)  # ConfigError lists problems


async def close_runtime(runtime: Runtime) -> None:
    await runtime.upstream.close()
    runtime.access_log.close()


def build_apps(holder: Holder, metrics: GuardMetrics,
               pages: admin.AdminPages) -> tuple[web.Server, web.Application, Proxy]:
    """The main server (every path goes to the proxy) and the admin application.

    The main listener is aiohttp's low-level Server: every path has one handler, so the router,
    middleware chain and Application wrapper would only cost time on each request."""
    proxy = Proxy(holder, metrics)
    limits = holder.current.settings.limits
    main = web.Server(proxy.handle, access_log=None, keepalive_timeout=limits.idle_timeout,
                      max_line_size=limits.max_header_bytes, max_field_size=limits.max_header_bytes)
    metrics.add_counters(_authn_stats(holder), "guard_identity", "Identity step counters")
    _admission_pages(holder, pages)
    admin_app = admin.build_admin_app(metrics, pages, lambda: holder.current.settings,
                                      lambda: _ready(holder))
    return main, admin_app, proxy


def _admission_pages(holder: Holder, pages: admin.AdminPages) -> None:
    """/debug/guard/buckets, /queues and /policies: the admission controller's dumps, when it has them."""
    def page(method: str) -> Callable[[], object]:
        return lambda: getattr(holder.current.admission, method, list)()
    pages.add("buckets", page("snapshot_buckets"))
    pages.add("queues", page("snapshot_queues"))
    pages.add("policies", lambda: admin.policies_view(holder.current.admission))


def _authn_stats(holder: Holder) -> Callable[[], dict[str, int]]:
    def read() -> dict[str, int]:
        stats = getattr(holder.current.authenticator, "stats", None)
        counters = dict(vars(stats)) if stats is not None else {}
        sent = getattr(holder.current.impersonation, "reviews_sent", None)
        if sent is not None:
            counters["subject_access_reviews"] = sent
        return counters
    return read


async def _ready(holder: Holder) -> bool:
    upstream = holder.current.upstream
    sessions = [(ep.session, ep.url) for ep in upstream.endpoints]
    return await admin.any_endpoint_ready(sessions, dict(upstream.credential.auth_headers()))
