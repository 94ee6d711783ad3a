"""The request path: identify → classify → admit → forward, as one handler of guard.http.server.

Each step is a call through a seam (Authenticator, ImpersonationCheck, classify, Admission,
Upstream) built by `guard.process.wiring`. Every error a client sees is a Kubernetes Status; unexpected
exceptions become a 500 Status and a log line, never a traceback on the wire. It must never log or
forward a credential it was not meant to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict

from guard.admission.capacity import AtCapacity, CapacityGate
from guard.admission.decision import Ticket, Verdict
from guard.admission.listsize import ListSizer
from guard.http import answers as rawanswer
from guard.http import client as h1
from guard.http import tunnel
from guard.http.server import Request
from guard.identity.authn import Credentials
from guard.kube.errors import GuardError, TooManyRequests, Unauthorized
from guard.kube.identity import Identity
from guard.kube.requestinfo import RequestInfo, classify
from guard.proxy.runtime import Holder, Runtime, clusters_of
from guard.telemetry.accesslog import AccessRecord
from guard.telemetry.metrics import GuardMetrics, verb_label
from guard.upstream import exchange as forward

log = logging.getLogger("guard.proxy")
CLASSIFIED_KEPT = 1024
"""Request targets whose classification is remembered (forgotten all at once when full)."""
Answer = aiohttp.ClientResponse | h1.Response
"""An upstream answer: guard's lean client's for ordinary requests, aiohttp's for upgrades."""


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
    gate: CapacityGate | None = None
    """The adaptive limit this request holds a slot of, told how its exchange went."""


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
        self._classified: dict[tuple[str, str], RequestInfo] = {}
        metrics.watch_admission(lambda: (holder.current.upstream.name, holder.current.admission),
                                lambda: self.inflight)
        metrics.watch_requests(self._in_flight)

    def drain(self) -> None:
        """SIGTERM: end watches and tunnels cleanly so clients re-watch elsewhere."""
        self.draining = True
        for response in list(self._long_running):
            response.close()

    async def handle(self, request: Request) -> None:
        """Serve one request; every outcome is an answer on `request` or an aborted connection."""
        rt = self.holder.current
        ex = _Exchange(started=time.perf_counter())
        try:
            try:
                if rt.routes is not None:  # route: which cluster, and the target past /clusters/{name}
                    rt, request = rt.routes.route(request)
                ex.cluster = rt.upstream.name
                await self._serve(rt, request, ex)
            except GuardError as e:
                if e.code in (502, 503):
                    self._children.of(self.metrics.upstream_errors, rt.upstream.name, type(e).__name__).inc()
                await self._refuse(request, ex, e)
            except (ConnectionResetError, aiohttp.ClientConnectionResetError, asyncio.CancelledError):
                ex.status = 499  # the client (or upstream mid-body) went away; nothing left to answer
                raise
            except Exception:
                log.exception("unexpected error serving %s %s", request.method, request.path)
                await self._refuse(request, ex, GuardError("internal error in guard"))
        finally:
            self._record(rt, request, ex)

    async def _refuse(self, request: Request, ex: _Exchange, error: GuardError) -> None:
        """Answer `error` as a Status, noted in `ex` so metrics and the access log say what the
        client got (a 429 is logged as 429, not as the 500 `ex` starts with)."""
        if request.answered:  # the head is gone: a truncated answer must not look whole
            raise ConnectionResetError(f"cannot answer {error.code} after the answer started")
        ex.status, ex.retry_after = error.code, error.retry_after or 0
        await request.send(rawanswer.status(error, close=not request.keep_alive,
                                            head_only=request.method == "HEAD"))

    def _in_flight(self) -> list[tuple[str, int, int]]:
        """(cluster, requests upstream, long-running ones) for every cluster."""
        running = list(self._long_running.values())
        return [(c.upstream.name, sum(ep.in_flight for ep in c.upstream.endpoints),
                 running.count(c.upstream.name)) for c in clusters_of(self.holder.current)]

    async def _serve(self, rt: Runtime, request: Request, ex: _Exchange) -> None:
        caller = await self._identify(rt, request)
        effective = caller
        if any(k.lower().startswith("impersonate-") for k in request.headers):
            effective = await rt.impersonation.resolve(caller, request.headers)
        ex.identity = effective
        ex.info = info = self._classify(request)
        if rt.authorizer is not None:  # before admission: a denied request costs no quota
            await rt.authorizer.check(effective, info)
        ticket = await rt.admission.admit(effective, info, rt.upstream.name)
        verdict = ticket.verdict
        ex.decision, ex.tenant, ex.rule = verdict.outcome, verdict.tenant, verdict.rule
        tenant = verdict.tenant if verdict.outcome != "rejected" else ""
        if tenant:
            self.inflight[tenant] = self.inflight.get(tenant, 0) + 1
        try:
            gate = await self._enter(rt, ex, verdict) if rt.capacity is not None else None
            try:
                await self._admitted(rt, request, ex, ticket, caller)
            finally:
                if gate is not None:
                    gate.leave()
        finally:
            ticket.release()
            if tenant:
                self.inflight[tenant] -= 1

    @staticmethod
    async def _enter(rt: Runtime, ex: _Exchange, verdict: Verdict) -> CapacityGate | None:
        """Take a slot of the cluster's adaptive limit (waiting fairly, or AtCapacity: 429) for an
        admitted ordinary request; exempt rules and long-running requests pass untouched."""
        gate, info = rt.capacity, ex.info
        if (gate is None or info is None or info.is_long_running or not verdict.admitted
                or verdict.outcome == "exempt"):
            return None
        flow = verdict.tenant or (ex.identity.user if ex.identity is not None else "")
        try:
            if await gate.enter(flow, verdict.tenant, info, verdict.headers) == "held":
                ex.decision = "queued"
        except AtCapacity:
            ex.decision = "overload"
            raise
        ex.gate = gate
        return gate

    @staticmethod
    def _report(ex: _Exchange, sent: float, status: int = 0, error: GuardError | None = None) -> None:
        """Tell the adaptive limit how the exchange went: its answer's status, or the failure."""
        if ex.gate is not None and ex.info is not None:
            ex.gate.report(time.perf_counter() - sent, ex.info, status=status, error=error)

    def _classify(self, request: Request) -> RequestInfo:
        """classify(), remembered per (method, request target): controllers and kubectl repeat the
        same requests, and a RequestInfo is immutable."""
        key = (request.method, request.raw_path)
        info = self._classified.get(key)
        if info is None:
            info = classify(request.method, request.path, request.query)
            if len(self._classified) >= CLASSIFIED_KEPT:
                self._classified.clear()
            self._classified[key] = info
        return info

    async def _identify(self, rt: Runtime, request: Request) -> Identity:
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        return await rt.authenticator.authenticate(Credentials(
            bearer_token=token or None, peer_certificate_der=request.peer_certificate(),
            remote_addr=request.remote))

    async def _admitted(self, rt: Runtime, request: Request, ex: _Exchange, ticket: Ticket,
                        caller: Identity) -> None:
        verdict = ticket.verdict
        if not verdict.admitted:
            raise Rejected(verdict.reason or "Too many requests, please try again later.",
                           retry_after=max(1, verdict.retry_after), headers=verdict.headers)
        assert ex.identity is not None and ex.info is not None
        headers = self._headers(rt, request, ex.identity, caller)
        timeout = rt.timeouts[1] if ex.info.is_long_running else rt.timeouts[0]
        upgrade = tunnel.is_upgrade(request)
        upstream_response: Answer
        sent = time.perf_counter()
        try:
            if upgrade:  # upgrades stay on aiohttp's client, whose connection guard.http.tunnel splices
                headers.extend(tunnel.upgrade_headers(request.headers))
                endpoint, upstream_response = await forward.send(
                    rt.upstream, request, forward.Outbound(CIMultiDict(headers), timeout), None)
            else:
                body, chunked = await forward.lean_body(request, rt.settings.limits.max_body_bytes)
                sent = time.perf_counter()
                endpoint, upstream_response = await forward.send_lean(
                    rt.upstream, request, headers, body, chunked=chunked, read_timeout=timeout.sock_read)
        except GuardError as e:
            self._report(ex, sent, error=e)
            raise
        self._report(ex, sent, upstream_response.status)
        self._observe_latency(rt, ex)
        try:
            await self._respond(request, ex, upstream_response, verdict.headers, upgrade)
        finally:
            forward.release(endpoint)
            upstream_response.release()

    async def _respond(self, request: Request, ex: _Exchange, upstream: Answer,
                       add: Sequence[tuple[str, str]], upgrade: bool) -> None:
        long_running = ex.info is not None and ex.info.is_long_running
        if long_running:
            self._long_running[upstream] = ex.cluster
        body: bytes | None = None
        try:
            if upgrade and isinstance(upstream, aiohttp.ClientResponse) and upstream.status == 101:
                ex.status, ex.sent = await tunnel.splice(request, upstream, list(add))
            else:
                ex.status, ex.sent, body = await forward.relay(request, upstream, add,
                                                               draining=lambda: self.draining)
        finally:
            self._long_running.pop(upstream, None)
        if ex.info is not None and ex.info.verb == "list" and ex.status == 200:
            self._observe_list(request, ex.info, upstream, body, ex.sent, ex.cluster)

    def _observe_list(self, request: Request, info: RequestInfo, upstream: Answer,
                      body: bytes | None, sent: int, cluster: str) -> None:
        """Tell admission how many objects this LIST returned, to price the next ones (see
        guard.admission.listsize: a byte scan of small bodies, an estimate for streamed ones)."""
        rt = self.holder.current
        observe = getattr(rt.admission, "observe_list", None)
        if observe is None or "json" not in upstream.content_type or not self._sizer.due(cluster, info):
            return
        paged = "continue" in request.query
        if body is not None:
            count = self._sizer.whole(cluster, info, body, paged=paged)
        elif paged or "as=Table" in upstream.headers.get("Content-Type", ""):
            count = None  # a Table row is not an object: the learnt object size does not apply
        else:
            count = self._sizer.streamed(cluster, info, sent)
        if count is not None:
            observe(cluster, info, count)

    def _headers(self, rt: Runtime, request: Request, effective: Identity,
                 caller: Identity) -> list[tuple[str, str]]:
        """What goes upstream: the client's end-to-end headers, then guard's own."""
        peer = request.remote
        if rt.settings.forwarding == "impersonate":
            headers = forward.forwardable(request.headers, peer=peer, keep_authorization=False)
            headers.extend(rt.upstream.credential.auth_headers())
            headers.extend(rt.impersonation_headers(effective))
            return headers
        if "Authorization" not in request.headers and not effective.is_anonymous:
            raise Unauthorized("client certificate users need `forwarding: impersonate` in guard's settings")
        headers = forward.forwardable(request.headers, peer=peer, keep_authorization=True)
        if effective is not caller:
            headers.extend(rt.impersonation_headers(effective))
        return headers

    def _observe_latency(self, rt: Runtime, ex: _Exchange) -> None:
        if ex.info is not None and not ex.info.is_long_running:
            self.metrics.requests.observe(rt.upstream.name, verb_label(ex.info.verb),
                                          time.perf_counter() - ex.started)

    def _record(self, rt: Runtime, request: Request, ex: _Exchange) -> None:
        verb = verb_label(ex.info.verb) if ex.info else "other"
        cluster = rt.upstream.name
        self.metrics.requests.count(cluster, verb, ex.status, ex.sent)
        rt.access_log.write(AccessRecord(
            identity=ex.identity, info=ex.info, method=request.method, status=ex.status, bytes=ex.sent,
            latency=time.perf_counter() - ex.started, cluster=cluster, remote=request.remote,
            decision=ex.decision, tenant=ex.tenant, rule=ex.rule, retry_after=ex.retry_after))


class _Children:
    """Labelled metric children, looked up once: prometheus_client's `labels()` validates, locks
    and hashes on every call. Label values are bounded (see guard.telemetry.metrics), so this stays small."""

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
