"""The request path: route → identify → classify → authorize → shed → admit → capacity → forward, as the
one handler of guard.http.server.

Each step is a call through a seam (Authenticating, Impersonating, classify, Authorizing, Admission,
CapacityGate, the upstream exchange) built by `guard.process.wiring`. Every refusal is a GuardError
raised by the step that refuses and turned into a Kubernetes Status in one place (`Proxy._refuse`);
unexpected exceptions become a 500 Status and a log line, never a traceback on the wire. It must
never log or forward a credential it was not meant to. It runs past 300 lines because every step a
request meets is here, in that order, so the whole path reads in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import aiohttp
from aiohttp.http_writer import HttpVersion

from guard.admission.capacity import AtCapacity, CapacityGate
from guard.admission.decision import Ticket, Verdict
from guard.admission.protostream import StreamCounter
from guard.http import answers, client, headers, tunnel
from guard.http.relay import relay
from guard.http.request import Request
from guard.identity.authn import Credentials, bearer_token
from guard.kube.canonical import canonical
from guard.kube.errors import BadRequest, GuardError, TooManyRequests, Unauthorized
from guard.kube.identity import Identity
from guard.kube.requestinfo import RequestInfo, classify
from guard.proxy.listing import ObjectSizes
from guard.proxy.runtime import Runtime, Serving, clusters_of
from guard.routing.router import UnknownCluster
from guard.telemetry.accesslog import AccessRecord
from guard.telemetry.metrics import GuardMetrics, verb_label
from guard.upstream.exchange import Exchange, Outbound, request_body

log = logging.getLogger(__name__)
PROTOCOLS = {HttpVersion(1, 1): "HTTP/1.1", HttpVersion(1, 0): "HTTP/1.0", HttpVersion(2, 0): "HTTP/2"}
"""The access log's `protocol` field for each request version."""
CLASSIFIED_KEPT = 1024
"""Request targets whose classification is remembered (forgotten all at once when full)."""
REJECTED = "Too many requests, please try again later."
CERTIFICATE_AND_TOKEN = ("a client certificate and an Authorization header together: guard forwards the "
                         "header (forwarding: passthrough), so send one credential, not both")


class _Record:
    """What one request has learnt so far, for metrics and the access log (a plain class with
    slots: one per request, built and read faster than a dataclass)."""

    __slots__ = ("cluster", "decision", "gate", "identity", "info", "retry_after", "rule", "sent", "started",
                 "status", "tenant")

    def __init__(self, started: float) -> None:
        self.started = started
        self.cluster = ""
        self.identity: Identity | None = None
        self.info: RequestInfo | None = None
        self.status = 500
        self.sent = 0
        self.decision = ""
        self.tenant = ""
        self.rule = ""
        self.retry_after = 0
        self.gate: CapacityGate | None = None
        """The adaptive limit this request holds a slot of, told how its exchange went."""


class Proxy:
    """The catch-all handler of the main listener."""

    def __init__(self, serving: Serving, metrics: GuardMetrics) -> None:
        self.serving = serving
        self.metrics = metrics
        self.draining = False
        self._long_running: dict[client.Response, str] = {}
        """Watches and tunnels being served, and their cluster."""
        self.inflight: dict[tuple[str, str], int] = {}
        """Admitted requests being served per (cluster, tenant) (bounded by the settings' clusters
        and the policies' tenants)."""
        self._sizes = ObjectSizes(lambda: self.serving.runtime.admission)
        self._classified: dict[tuple[str, str], tuple[RequestInfo, str | None]] = {}
        metrics.watch_admission(lambda: (serving.runtime.upstream.name, serving.runtime.admission),
                                lambda: self.inflight)
        metrics.watch_requests(self._in_flight)

    def drain(self) -> None:
        """SIGTERM: end watches and tunnels cleanly so clients re-watch elsewhere."""
        self.draining = True
        for response in list(self._long_running):
            response.close()

    async def handle(self, request: Request) -> None:
        """Serve one request; every outcome is an answer on `request` or an aborted connection."""
        rt = self.serving.runtime
        record = _Record(started=time.perf_counter())
        try:
            try:
                if rt.routes is not None:  # route: which cluster, and the target past /clusters/{name}
                    rt, request = await self._route(rt, request)
                record.cluster = rt.upstream.name
                await self._serve(rt, request, record)
            except GuardError as e:
                if e.code in (502, 503):
                    self.metrics.count_upstream_error(rt.upstream.name, type(e).__name__)
                await self._refuse(request, record, e)
            except (ConnectionResetError, aiohttp.ClientConnectionResetError, asyncio.CancelledError):
                record.status = 499  # the client (or upstream mid-body) went away; nothing left to answer
                raise
            except Exception:
                log.exception("unexpected error serving %s %s", request.method, request.path)
                await self._refuse(request, record, GuardError("internal error in guard"))
        finally:
            self._record(rt, request, record)

    async def _route(self, rt: Runtime, request: Request) -> tuple[Runtime, Request]:
        """The routed cluster's runtime and the retargeted request. A prefix naming no cluster is
        answered 404 only to a caller the default cluster authenticates: anyone else gets what an
        unauthenticated request to a served cluster gets, so cluster names cannot be enumerated."""
        assert rt.routes is not None
        try:
            return rt.routes.route(request)
        except UnknownCluster:
            await self._identify(rt, request)
            raise

    async def _refuse(self, request: Request, record: _Record, error: GuardError) -> None:
        """Answer `error` as a Status, noted in `record` so metrics and the access log say what the
        client got (a 429 is logged as 429, not as the 500 `record` starts with)."""
        if request.answered:  # the head is gone: a truncated answer must not look whole
            raise ConnectionResetError(f"cannot answer {error.code} after the answer started")
        record.status, record.retry_after = error.code, error.retry_after or 0
        await request.send(answers.status(error, close=not request.keep_alive,
                                          head_only=request.method == "HEAD"))

    def _in_flight(self) -> list[tuple[str, int, int]]:
        """(cluster, requests upstream, long-running ones) for every cluster."""
        running = list(self._long_running.values())
        return [(c.upstream.name, sum(ep.in_flight for ep in c.upstream.endpoints),
                 running.count(c.upstream.name)) for c in clusters_of(self.serving.runtime)]

    async def _serve(self, rt: Runtime, request: Request, record: _Record) -> None:
        caller = await self._identify(rt, request)
        effective = caller
        if headers.asks_impersonation(request.headers):
            effective = await rt.impersonation.resolve(caller, request.headers)
        record.identity = effective
        record.info = info = self._classify(request)
        if rt.authorizer is not None:  # before admission: a denied request costs no quota
            await rt.authorizer.check(effective, info)
        if rt.shedding is not None:  # the fleet's emergency brake: before admission, costs no quota
            refusal = rt.shedding.refusal(effective, info, rt.upstream.name, rt.admission)
            if refusal is not None:
                record.decision = "shed"
                raise refusal
        ticket = await rt.admission.admit(effective, info, rt.upstream.name)
        verdict = ticket.verdict
        record.decision, record.tenant, record.rule = verdict.outcome, verdict.tenant, verdict.rule
        admitted = verdict.outcome != "rejected" and verdict.tenant
        tenant = (rt.upstream.name, verdict.tenant) if admitted else None
        if tenant is not None:
            self.inflight[tenant] = self.inflight.get(tenant, 0) + 1
        try:
            gate = await self._enter(rt, record, verdict) if rt.capacity is not None else None
            try:
                await self._forward(rt, request, record, ticket, caller)
            finally:
                if gate is not None:
                    gate.leave()
        finally:
            ticket.release()
            if tenant is not None:
                self.inflight[tenant] -= 1

    @staticmethod
    async def _enter(rt: Runtime, record: _Record, verdict: Verdict) -> CapacityGate | None:
        """Take a slot of the cluster's adaptive limit (waiting fairly, or AtCapacity: 429) for an
        admitted ordinary request; exempt rules and long-running requests pass untouched."""
        gate, info = rt.capacity, record.info
        if (gate is None or info is None or info.is_long_running or not verdict.admitted
                or verdict.outcome == "exempt"):
            return None
        flow = verdict.tenant or (record.identity.user if record.identity is not None else "")
        try:
            if await gate.enter(flow, verdict.tenant, info, verdict.headers) == "held":
                record.decision = "queued"
        except AtCapacity:
            record.decision = "overload"
            raise
        record.gate = gate
        return gate

    @staticmethod
    def _report(record: _Record, sent: float, status: int = 0, error: GuardError | None = None) -> None:
        """Tell the adaptive limit how the exchange went: its answer's status, or the failure."""
        if record.gate is not None and record.info is not None:
            record.gate.report(time.perf_counter() - sent, record.info, status=status, error=error)

    def _classify(self, request: Request) -> RequestInfo:
        """classify() of the target's canonical form (guard.kube.canonical), remembered per (method,
        request target): controllers and kubectl repeat the same requests, and a RequestInfo is
        immutable. A target whose canonical form differs is sent upstream in that form, so the
        api-server serves what guard classified; one guard refuses is a 400 Status."""
        key = (request.method, request.raw_path)
        found = self._classified.get(key)
        if found is None:
            target = canonical(request.raw_path)
            info = classify(request.method, target.path, target.params)
            found = (info, target.forward if target.changed else None)
            if len(self._classified) >= CLASSIFIED_KEPT:
                self._classified.clear()
            self._classified[key] = found
        if found[1] is not None:
            request.retarget(found[1])
        return found[0]

    async def _identify(self, rt: Runtime, request: Request) -> Identity:
        certificate = request.peer_certificate()
        if (certificate is not None and "Authorization" in request.headers
                and rt.settings.forwarding == "passthrough"):
            # guard would charge the certificate's user while the api-server runs the header's
            raise BadRequest(CERTIFICATE_AND_TOKEN)
        token = bearer_token(request.headers.get("Authorization"))
        return await rt.authenticator.authenticate(Credentials(token, certificate, request.remote))

    async def _forward(self, rt: Runtime, request: Request, record: _Record, ticket: Ticket,
                       caller: Identity) -> None:
        """Send an admitted request upstream and relay the answer; a rejected one gets its 429."""
        verdict = ticket.verdict
        if not verdict.admitted:
            raise TooManyRequests(verdict.reason or REJECTED, retry_after=max(1, verdict.retry_after),
                                  headers=verdict.headers)
        out = await self._outbound(rt, request, record, caller)
        sent, reported = time.perf_counter(), False
        try:
            async with Exchange(rt.upstream, out) as answer:
                self._report(record, sent, answer.status)
                reported = True
                self._observe_latency(rt, record)
                await self._respond(request, record, answer, verdict.headers)
        except GuardError as e:
            if not reported:
                self._report(record, sent, error=e)
            raise

    async def _outbound(self, rt: Runtime, request: Request, record: _Record, caller: Identity) -> Outbound:
        assert record.identity is not None and record.info is not None
        sent = self._headers(rt, request, record.identity, caller)
        if headers.asks_upgrade(request.headers):  # exec, attach, port-forward: a tunnel after a 101
            sent.extend(tunnel.upgrade_request_headers(request.headers))
        body, chunked = await request_body(request, rt.settings.limits.max_body_bytes) \
            if request.body_exists else (None, False)
        timeout = None if record.info.is_long_running else rt.settings.limits.request_timeout
        return Outbound(request.method, request.raw_path, sent, body, chunked, timeout)

    async def _respond(self, request: Request, record: _Record, upstream: client.Response,
                       add: Sequence[tuple[str, str]]) -> None:
        long_running = record.info is not None and record.info.is_long_running
        if long_running:
            self._long_running[upstream] = record.cluster
        body: bytes | None = None
        counter: StreamCounter | None = None
        try:
            if upstream.status == 101 and headers.asks_upgrade(request.headers):
                record.status, record.sent = await tunnel.splice(request, upstream, add)
            else:
                counter = self._sizes.counter(request.method, record.info, record.cluster, upstream) \
                    if record.info is not None and record.info.verb == "list" else None
                record.status, record.sent, body = await relay(
                    request, upstream, add, draining=lambda: self.draining,
                    tap=counter.feed if counter is not None else None)
        finally:
            self._long_running.pop(upstream, None)
        if record.info is not None and record.status == 200:
            if counter is not None:  # a streamed protobuf LIST, counted as it passed
                self._sizes.counted(record.info, record.cluster, counter)
            else:
                self._sizes.learn(request.method, record.info, record.cluster, upstream, body, record.sent)

    def _headers(self, rt: Runtime, request: Request, effective: Identity,
                 caller: Identity) -> list[tuple[str, str]]:
        """What goes upstream: the client's end-to-end headers, then guard's own."""
        peer = request.remote
        if rt.settings.forwarding == "impersonate":
            sent = headers.forwardable(request.headers, peer=peer, keep_authorization=False)
            sent.extend(rt.upstream.credential.auth_headers())
            sent.extend(rt.impersonation_headers(effective))
            return sent
        if "Authorization" not in request.headers and not effective.is_anonymous:
            raise Unauthorized("client certificate users need `forwarding: impersonate` in guard's settings")
        sent = headers.forwardable(request.headers, peer=peer, keep_authorization=True)
        if effective is not caller:
            sent.extend(rt.impersonation_headers(effective))
        return sent

    def _observe_latency(self, rt: Runtime, record: _Record) -> None:
        if record.info is not None and not record.info.is_long_running:
            self.metrics.requests.observe(rt.upstream.name, verb_label(record.info.verb),
                                          time.perf_counter() - record.started)

    def _record(self, rt: Runtime, request: Request, record: _Record) -> None:
        verb = verb_label(record.info.verb) if record.info else "other"
        cluster = rt.upstream.name
        self.metrics.requests.count(cluster, verb, record.status, record.sent)
        rt.access_log.write(AccessRecord(  # by position: keywords cost a NamedTuple twice the time
            record.identity, record.info, request.method, record.status, record.sent,
            time.perf_counter() - record.started, cluster, request.remote, record.decision, record.tenant,
            record.rule, record.retry_after, PROTOCOLS.get(request.version, "")))
