"""How one simulated api-server replica bears load: in-flight limits, service time, memory, crash.

The model follows the api-server's max-in-flight filter: read-only and mutating requests each have
a bounded number of seats (long-running requests — watches, log follows, exec — hold none); past
the bound the answer is 429 with `Retry-After: 1` and a `Status` body. Service time grows with the
seats in use, and a LIST also costs time per object and charges its response bytes against a
memory budget; past the budget the replica crashes. For `cold_start_s` after a replica (re)starts
its watch cache is cold: a LIST is served from storage and costs `cold_list_factor` times the time
and memory (off by default). Like the api-server, a request keeps its seat until its response body
has been written to the client (with backpressure), so slow readers hold seats. This module
decides, sleeps and writes responses; it never touches sockets beyond a modest send buffer on the
connection and dropping the connection of the request that crashed its replica (the `ReplicaSet`
owns listening and restarting).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from chaos.sim.metrics import SimMetrics, metrics_handler
from chaos.sim.options import SimOptions

READONLY = "readonly"
MUTATING = "mutating"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CONNECT_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy"})
_EXEMPT_EXACT = frozenset({"/metrics", "/healthz", "/readyz", "/livez"})
_EXEMPT_PREFIXES = ("/debug/sim/", "/healthz/", "/readyz/", "/livez/")
_TRUE = frozenset({"true", "1"})
SEND_BUFFER_BYTES = 64 * 1024
"""Per-connection kernel send buffer: without a cap, loopback autotuning lets the kernel swallow
whole LIST bodies, so a slow reader would never hold its seat as it does on a real api-server
behind a real network link."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ReplicaCrashed(Exception):
    """The replica ran out of memory while serving this request; its connection is dropped."""


@dataclass
class _RequestState:
    """What the LIST handler tells the middleware about the request it is serving."""

    listed: bool = False


_current_request: contextvars.ContextVar[_RequestState | None] = contextvars.ContextVar(
    "sim_current_request", default=None
)


def is_exempt(path: str) -> bool:
    """The simulator's own and health endpoints never count against the limits."""
    return path in _EXEMPT_EXACT or path.startswith(_EXEMPT_PREFIXES)


def long_running_verb(method: str, path: str, query: dict[str, str]) -> str | None:
    """WATCH or CONNECT for requests the api-server treats as long-running, else None."""
    if query.get("watch", "").lower() in _TRUE or "/watch/" in path:
        return "WATCH"
    segments = path.rstrip("/").split("/")
    if segments[-1] in _CONNECT_SUBRESOURCES or (len(segments) > 1 and segments[-2] == "proxy"):
        return "CONNECT"
    if segments[-1] == "log" and query.get("follow", "").lower() in _TRUE:
        return "WATCH"
    return None


def too_many_requests() -> web.Response:
    """The api-server's max-in-flight answer, which client-go and kubectl back off from."""
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Too many requests, please try again later.",
        "reason": "TooManyRequests",
        "details": {"retryAfterSeconds": 1},
        "code": 429,
    }
    return web.Response(
        status=429, text=json.dumps(status), content_type="application/json", headers={"Retry-After": "1"}
    )


class ReplicaLoad:
    """The load state of one api-server replica; fresh after every restart."""

    def __init__(self, index: int, options: SimOptions, metrics: SimMetrics | None = None) -> None:
        self.index = index
        self.options = options
        self.metrics = metrics if metrics is not None else SimMetrics()
        self.crashes = 0
        self.up = True
        self.readonly_inflight = 0
        self.mutating_inflight = 0
        self.list_bytes = 0
        self.on_crash: Callable[[], None] | None = None
        """Set by the ReplicaSet: starts the crash (stop listening, wait, come back) in the background."""
        self.started = time.monotonic()
        self.metrics.set_up(index, True)

    def reset(self) -> None:
        """Forget in-flight state, as a restarted process would."""
        self.readonly_inflight = 0
        self.mutating_inflight = 0
        self.list_bytes = 0
        for kind in (READONLY, MUTATING):
            self.metrics.set_inflight(self.index, kind, 0)
        self.metrics.set_list_bytes(self.index, 0)

    def limit(self, kind: str) -> int:
        if kind == MUTATING:
            return self.options.max_mutating_inflight
        return self.options.max_readonly_inflight

    def inflight(self, kind: str) -> int:
        return self.mutating_inflight if kind == MUTATING else self.readonly_inflight

    def try_acquire(self, kind: str) -> bool:
        """Take a seat of `kind`, or refuse when all are taken."""
        if self.inflight(kind) >= self.limit(kind):
            return False
        self._add(kind, 1)
        return True

    def release(self, kind: str) -> None:
        self._add(kind, -1)

    def _add(self, kind: str, delta: int) -> None:
        if kind == MUTATING:
            self.mutating_inflight = max(0, self.mutating_inflight + delta)
        else:
            self.readonly_inflight = max(0, self.readonly_inflight + delta)
        self.metrics.set_inflight(self.index, kind, self.inflight(kind))

    def load_factor(self, kind: str) -> float:
        """(1 + inflight/limit) ** exponent: 1 when idle, 2**exponent at the limit."""
        limit = max(1, self.limit(kind))
        return float((1.0 + self.inflight(kind) / limit) ** self.options.load_exponent)

    def service_seconds(self, kind: str, n_objects: int = 0) -> float:
        base_ms = self.options.base_service_ms + self.options.per_object_service_us * n_objects / 1000.0
        return base_ms * self.load_factor(kind) / 1000.0

    @property
    def memory_budget_bytes(self) -> int:
        return int(self.options.memory_budget_mb * 1024 * 1024)

    def list_factor(self) -> float:
        """How many times a LIST's time and memory it costs now: cold_list_factor while cold, else 1."""
        if time.monotonic() - self.started < self.options.cold_start_s:
            return self.options.cold_list_factor
        return 1.0

    async def serve_list(self, n_objects: int, n_bytes: int) -> None:
        """Spend a LIST's service time holding its response bytes; crash past the memory budget."""
        state = _current_request.get()
        if state is not None:
            state.listed = True
        factor = self.list_factor()
        n_bytes = int(n_bytes * factor)
        self.list_bytes += n_bytes
        self.metrics.set_list_bytes(self.index, self.list_bytes)
        try:
            budget = self.memory_budget_bytes
            if budget > 0 and self.list_bytes > budget:
                self.crash_soon()
                raise ReplicaCrashed(
                    f"replica {self.index} out of memory: {self.list_bytes} > {budget} bytes"
                )
            await asyncio.sleep(self.service_seconds(READONLY, n_objects) * factor)
        finally:
            self.list_bytes = max(0, self.list_bytes - n_bytes)
            self.metrics.set_list_bytes(self.index, self.list_bytes)

    def crash_soon(self) -> None:
        """Start the crash: the ReplicaSet's when there is one, else only the bookkeeping."""
        if not self.up:
            return
        if self.on_crash is None:
            self.mark_crashed()
        else:
            self.on_crash()

    def mark_crashed(self) -> None:
        self.up = False
        self.crashes += 1
        self.metrics.crashed(self.index)

    def mark_up(self) -> None:
        self.reset()
        self.started = time.monotonic()
        self.up = True
        self.metrics.set_up(self.index, True)


def overload_middleware(load: ReplicaLoad) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The max-in-flight filter and service-time model of replica `load.index`."""

    # The replica answers /metrics itself, ahead of authentication, so scrapers need no token.
    serve_metrics = metrics_handler(load.metrics.registry)

    @web.middleware
    async def overload(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/metrics" and request.method == "GET":
            return await serve_metrics(request)
        if is_exempt(request.path):
            return await handler(request)
        if not load.up:
            return _drop(request)
        verb = long_running_verb(request.method, request.path, dict(request.query))
        if verb is not None:
            return await _timed(load, request, handler, verb)
        kind = MUTATING if request.method in MUTATING_METHODS else READONLY
        if not load.try_acquire(kind):
            load.metrics.record(load.index, request.method, 429, 0.0)
            return too_many_requests()
        try:
            return await _serve(load, request, handler, kind)
        finally:
            load.release(kind)

    return overload


async def _timed(load: ReplicaLoad, request: web.Request, handler: Handler, verb: str) -> web.StreamResponse:
    """Serve a long-running request without a seat, recording it when it ends."""
    started = asyncio.get_running_loop().time()
    code = 500
    try:
        response = await handler(request)
        code = response.status
        return response
    except web.HTTPException as e:
        code = e.status
        raise
    finally:
        load.metrics.record(load.index, verb, code, asyncio.get_running_loop().time() - started)


async def _serve(load: ReplicaLoad, request: web.Request, handler: Handler, kind: str) -> web.StreamResponse:
    """Run the handler, then the service time unless the LIST handler already spent it."""
    state = _RequestState()
    token = _current_request.set(state)
    loop = asyncio.get_running_loop()
    started = loop.time()
    code = 500
    try:
        response = await handler(request)
        if not state.listed:
            await asyncio.sleep(load.service_seconds(kind))
        code = response.status
        await _write_out(request, response)
        return response
    except web.HTTPException as e:
        code = e.status
        raise
    except ReplicaCrashed:
        code = 0
        return _drop(request)
    finally:
        _current_request.reset(token)
        verb = "LIST" if state.listed else request.method
        load.metrics.record(load.index, verb, code, loop.time() - started)


async def _write_out(request: web.Request, response: web.StreamResponse) -> None:
    """Write an ordinary response now, while the seat is held: the write waits for a slow reader
    once the send buffers fill, as the api-server's does. aiohttp's own later prepare/write_eof
    find the response already sent and do nothing. Streamed responses wrote themselves already."""
    if response.prepared or not isinstance(response, web.Response):
        return
    _cap_send_buffer(request)
    # A client that hangs up mid-body frees the seat; aiohttp ignores the finished response.
    with contextlib.suppress(ConnectionError):
        await response.prepare(request)
        await response.write_eof()


def _cap_send_buffer(request: web.Request) -> None:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


def _drop(request: web.Request) -> web.StreamResponse:
    """End the request with its connection torn down, as a killed process would."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp cannot write this to the aborted transport; it only ends the handler cleanly.
    return web.Response(status=503)
