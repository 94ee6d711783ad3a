"""The request path: identify → classify → admit → forward, as one aiohttp handler.

Each step is a call through a seam (Authenticator, ImpersonationCheck, classify, Admission,
Upstream) built by `guard.app`. Every error a client sees is a Kubernetes Status; unexpected
exceptions become a 500 Status and a log line, never a traceback on the wire. It must never log or
forward a credential it was not meant to.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from guard import forward, h1, tunnel
from guard.accesslog import AccessLog, AccessRecord
from guard.admission.decision import Admission, Ticket
from guard.authn import Credentials
from guard.errors import GuardError, TooManyRequests, Unauthorized
from guard.identity import Identity
from guard.listsize import ListSizer
from guard.metrics import GuardMetrics, verb_label
from guard.rawanswer import RawAnswer
from guard.requestinfo import RequestInfo, classify
from guard.routing.dispatch import Routes
from guard.settings import Settings
from guard.upstream import Upstream

log = logging.getLogger("guard.proxy")
Answer = aiohttp.ClientResponse | h1.Response
"""An upstream answer: guard's lean client's for ordinary requests, aiohttp's for upgrades."""
Reply = web.StreamResponse | RawAnswer
"""What guard answers the client with: aiohttp's response, or a small answer as raw bytes."""


class Authenticating(Protocol):
    async def authenticate(self, creds: Credentials) -> Identity: ...


class Impersonating(Protocol):
    async def resolve(self, caller: Identity, headers: object) -> Identity: ...


class Authorizing(Protocol):
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
    timeouts: tuple[aiohttp.ClientTimeout, aiohttp.ClientTimeout] = field(repr=False, default=(
        aiohttp.ClientTimeout(), aiohttp.ClientTimeout()))
    """(ordinary, long-running) upstream timeouts."""
    authorizer: Authorizing | None = None
    """Edge authorization (guard.authz); None when the cluster's `authorize` is off."""
    routes: Routes[Runtime] | None = None
    """Every cluster's Runtime and which one serves a request (guard.routing); None: this one."""


class Holder:
    """The current Runtime. Requests read `current` once, so a reload never mixes generations."""

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime


@dataclass
class _Exchange:
    """What one request has learnt so far, for metrics and the access log."""

    started: float
    cluster: str = ""
    identity: Identity | None = None
    info: RequestInfo | None = None
    status: int = 500
    sent: int = 0
    decision: str = ""
    tenant: str = ""
    rule: str = ""
    retry_after: int = 0


class Proxy:
    """The catch-all handler of the main listener."""

    def __init__(self, holder: Holder, metrics: GuardMetrics) -> None:
        self.holder = holder
        self.metrics = metrics
        self.draining = False
        self._long_running: dict[Answer, str] = {}
        """Watches and tunnels being served, and their cluster."""
        self._children = _Children()
        self.inflight: dict[str, int] = {}
        """Admitted requests being served per tenant (bounded by the policies' tenants)."""
        self._sizer = ListSizer()
        metrics.watch_admission(lambda: (holder.current.upstream.name, holder.current.admission),
                                lambda: self.inflight)
        metrics.watch_requests(self._in_flight)

    def drain(self) -> None:
        """SIGTERM: end watches and tunnels cleanly so clients re-watch elsewhere."""
        self.draining = True
        for response in list(self._long_running):
            response.close()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        # A RawAnswer is not a StreamResponse but has all aiohttp's server calls on one.
        return cast(web.StreamResponse, await self._handle(request))

    async def _handle(self, request: web.BaseRequest) -> Reply:
        rt = self.holder.current
        ex = _Exchange(started=time.perf_counter())
        try:
            if rt.routes is not None:  # route: which cluster, and the target past /clusters/{name}
                rt, request = rt.routes.route(request)
            ex.cluster = rt.upstream.name
            response = await self._serve(rt, request, ex)
        except GuardError as e:
            response = _answer(ex, e)
            if e.code in (502, 503):
                self._children.of(self.metrics.upstream_errors, rt.upstream.name, type(e).__name__).inc()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            ex.status = 499  # the client (or upstream mid-body) went away; nothing left to answer
            raise
        except Exception:
            log.exception("unexpected error serving %s %s", request.method, request.path)
            response = _answer(ex, GuardError("internal error in guard"))
        finally:
            self._record(rt, request, ex)
        return response

    def _in_flight(self) -> list[tuple[str, int, int]]:
        """(cluster, requests upstream, long-running ones) for every cluster."""
        rt = self.holder.current
        clusters = rt.routes.runtimes.values() if rt.routes is not None else (rt,)
        running = list(self._long_running.values())
        return [(c.upstream.name, sum(ep.in_flight for ep in c.upstream.endpoints),
                 running.count(c.upstream.name)) for c in clusters]

    async def _serve(self, rt: Runtime, request: web.BaseRequest, ex: _Exchange) -> Reply:
        caller = await self._identify(rt, request)
        effective = caller
        if any(k.lower().startswith("impersonate-") for k in request.headers):
            effective = await rt.impersonation.resolve(caller, request.headers)
        ex.identity = effective
        ex.info = info = classify(request.method, request.path, request.query)
        if rt.authorizer is not None:  # before admission: a denied request costs no quota
            await rt.authorizer.check(effective, info)
        ticket = await rt.admission.admit(effective, info, rt.upstream.name)
        verdict = ticket.verdict
        ex.decision, ex.tenant, ex.rule = verdict.outcome, verdict.tenant, verdict.rule
        tenant = verdict.tenant if verdict.outcome != "rejected" else ""
        if tenant:
            self.inflight[tenant] = self.inflight.get(tenant, 0) + 1
        try:
            return await self._admitted(rt, request, ex, ticket, caller)
        finally:
            ticket.release()
            if tenant:
                self.inflight[tenant] -= 1

    async def _identify(self, rt: Runtime, request: web.BaseRequest) -> Identity:
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        return await rt.authenticator.authenticate(Credentials(
            bearer_token=token or None, peer_certificate_der=peer_certificate(request),
            remote_addr=request.remote or ""))

    async def _admitted(self, rt: Runtime, request: web.BaseRequest, ex: _Exchange, ticket: Ticket,
                        caller: Identity) -> Reply:
        verdict = ticket.verdict
        if not verdict.admitted:
            raise Rejected(verdict.reason or "Too many requests, please try again later.",
                           retry_after=max(1, verdict.retry_after), headers=verdict.headers)
        assert ex.identity is not None and ex.info is not None
        outbound = forward.Outbound(self._headers(rt, request, ex.identity, caller),
                                    rt.timeouts[1] if ex.info.is_long_running else rt.timeouts[0])
        upgrade = tunnel.is_upgrade(request)
        upstream_response: Answer
        if upgrade:  # upgrades stay on aiohttp's client, whose connection guard.tunnel splices
            outbound.headers.extend(tunnel.upgrade_headers(request))
            endpoint, upstream_response = await forward.send(rt.upstream, request, outbound, None)
        else:
            body, chunked = await forward.lean_body(request, rt.settings.limits.max_body_bytes)
            endpoint, upstream_response = await forward.send_lean(
                rt.upstream, request, outbound.headers, body, chunked=chunked,
                read_timeout=outbound.timeout.sock_read)
        self._observe_latency(rt, ex)
        try:
            return await self._respond(request, ex, upstream_response, verdict.headers, upgrade)
        finally:
            forward.release(endpoint)
            upstream_response.release()

    async def _respond(self, request: web.BaseRequest, ex: _Exchange, upstream: Answer,
                       add: Sequence[tuple[str, str]], upgrade: bool) -> Reply:
        long_running = ex.info is not None and ex.info.is_long_running
        response: Reply
        if long_running:
            self._long_running[upstream] = ex.cluster
        try:
            if upgrade and isinstance(upstream, aiohttp.ClientResponse) and upstream.status == 101:
                response, ex.sent = await tunnel.splice(request, upstream, list(add))
            else:
                response, ex.sent = await forward.relay(request, upstream, add,
                                                        draining=lambda: self.draining)
        finally:
            self._long_running.pop(upstream, None)
        ex.status = response.status
        if ex.info is not None and ex.info.verb == "list" and response.status == 200:
            self._observe_list(request, ex.info, upstream, response, ex.sent, ex.cluster)
        return response

    def _observe_list(self, request: web.BaseRequest, info: RequestInfo, upstream: Answer,
                      response: Reply, sent: int, cluster: str) -> None:
        """Tell admission how many objects this LIST returned, to price the next ones (see
        guard.listsize: a byte scan of small bodies, an estimate for streamed ones)."""
        rt = self.holder.current
        observe = getattr(rt.admission, "observe_list", None)
        if observe is None or "json" not in upstream.content_type or not self._sizer.due(cluster, info):
            return
        paged = "continue" in request.query
        body = response.body if isinstance(response, web.Response | RawAnswer) else None
        if isinstance(body, bytes):
            count = self._sizer.whole(cluster, info, body, paged=paged)
        elif paged or "as=Table" in upstream.headers.get("Content-Type", ""):
            count = None  # a Table row is not an object: the learnt object size does not apply
        else:
            count = self._sizer.streamed(cluster, info, sent)
        if count is not None:
            observe(cluster, info, count)

    def _headers(self, rt: Runtime, request: web.BaseRequest, effective: Identity,
                 caller: Identity) -> CIMultiDict[str]:
        peer = request.remote or ""
        if rt.settings.forwarding == "impersonate":
            add = [*rt.upstream.credential.auth_headers(), *rt.impersonation_headers(effective)]
            return forward.request_headers(request.headers, peer=peer, keep_authorization=False, add=add)
        if "Authorization" not in request.headers and not effective.is_anonymous:
            raise Unauthorized("client certificate users need `forwarding: impersonate` in guard's settings")
        add = list(rt.impersonation_headers(effective)) if effective is not caller else []
        return forward.request_headers(request.headers, peer=peer, keep_authorization=True, add=add)

    def _observe_latency(self, rt: Runtime, ex: _Exchange) -> None:
        if ex.info is not None and not ex.info.is_long_running:
            self._children.of(self.metrics.latency, rt.upstream.name, verb_label(ex.info.verb)).observe(
                time.perf_counter() - ex.started)

    def _record(self, rt: Runtime, request: web.BaseRequest, ex: _Exchange) -> None:
        verb = verb_label(ex.info.verb) if ex.info else "other"
        cluster = rt.upstream.name
        children, metrics = self._children, self.metrics
        children.of(metrics.requests, cluster, verb, str(ex.status)).inc()
        children.of(metrics.bytes_sent, cluster).inc(ex.sent)
        rt.access_log.write(AccessRecord(
            identity=ex.identity, info=ex.info, method=request.method, status=ex.status, bytes=ex.sent,
            latency=time.perf_counter() - ex.started, cluster=cluster, remote=request.remote or "",
            decision=ex.decision, tenant=ex.tenant, rule=ex.rule, retry_after=ex.retry_after))


class _Children:
    """Labelled metric children, looked up once: prometheus_client's `labels()` validates, locks
    and hashes on every call. Label values are bounded (see guard.metrics), so this stays small."""

    def __init__(self) -> None:
        self._seen: dict[tuple[object, tuple[str, ...]], Any] = {}

    def of(self, metric: Any, *values: str) -> Any:
        key = (metric, values)
        child = self._seen.get(key)
        if child is None:
            child = self._seen[key] = metric.labels(*values)
        return child


class Rejected(TooManyRequests):
    """A rejection by admission, carrying the verdict's headers to the client."""

    def __init__(self, message: str, *, retry_after: int, headers: Sequence[tuple[str, str]]) -> None:
        super().__init__(message, retry_after=retry_after)
        self.headers = headers


def _answer(ex: _Exchange, error: GuardError) -> web.Response:
    """The Status answer for `error`, noted in `ex` so metrics and the access log say what the
    client got (a 429 is logged as 429, not as the 500 `ex` starts with)."""
    response = status_response(error)
    ex.status, ex.retry_after = response.status, error.retry_after or 0
    return response


def status_response(error: GuardError) -> web.Response:
    headers: dict[str, str] = {"Content-Type": "application/json"}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    response = web.Response(status=error.code, body=json.dumps(error.status()).encode(), headers=headers)
    for k, v in getattr(error, "headers", ()):
        response.headers.add(k, v)
    return response


def peer_certificate(request: web.BaseRequest) -> bytes | None:
    """The client certificate the TLS layer verified against the client CA, as DER."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
