"""The aiohttp application of one api-server replica: the middleware chain and the dispatcher.

Chain: [overload (when a ReplicaLoad is given)] → wire (an answer in protobuf when the client prefers
it) → errors (every failure becomes a `Status`, never a traceback) → security (authenticate,
impersonate, record, authorize) → dispatch by verb and subresource (built-in kinds and the custom
resources of stored CRDs). All replicas of one cluster are built around the same `Simulation`. It
must never keep per-request state outside the request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from chaos.sim import crds, nonresource, reads, reviews, subresources, watch, wire, writes
from chaos.sim.authn import User
from chaos.sim.calls import Call, read_object, respond
from chaos.sim.kinds import TABLE, Kind
from chaos.sim.paths import Target, parse
from chaos.sim.security import admit
from chaos.sim.simulation import Simulation, optional_module
from chaos.sim.status import StatusError, status_body

if TYPE_CHECKING:
    from chaos.sim.overload import ReplicaLoad

log = logging.getLogger("chaos.sim")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SIM: web.AppKey[Simulation] = web.AppKey("sim", Simulation)
LOAD: web.AppKey[Any] = web.AppKey("load", object)
TARGET: web.RequestKey[Target] = web.RequestKey("target", Target)
USER: web.RequestKey[User] = web.RequestKey("user", User)
# Exceptions of these modules model a crashing replica: they must reach the replica machinery.
PASSTHROUGH_MODULES = ("chaos.sim.overload", "chaos.sim.replicas")
MAX_BODY = 64 * 1024 * 1024
# The simulator's own scrape endpoint: chaos observers read it without credentials.
UNAUTHENTICATED_PATHS = frozenset({"/metrics"})


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except StatusError as e:
        return respond(e.body, e.code, headers=e.headers)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return respond(status_body(e.status, e.reason), e.status)
    except Exception as e:
        if type(e).__module__ in PASSTHROUGH_MODULES:
            raise
        log.exception("internal error serving %s %s", request.method, request.path)
        return respond(status_body(500, f"Internal error occurred: {type(e).__name__}"), 500)


def security(sim: Simulation) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNAUTHENTICATED_PATHS:
            return await handler(request)
        target = parse(request.method, request.path, request.query)
        request[TARGET] = target
        request[USER] = admit(sim, request, target)
        return await handler(request)

    return middleware


def _kind(sim: Simulation, target: Target) -> Kind:
    kind = TABLE.lookup(target.group, target.version, target.resource) or crds.lookup(
        sim.store, target.group, target.version, target.resource
    )
    if kind is None or (target.namespace and not kind.namespaced and target.resource != "namespaces"):
        raise nonresource.not_found()
    if target.subresource and target.subresource not in kind.subresources:
        raise nonresource.not_found()
    return kind


_MAIN: dict[str, Callable[[Call], Awaitable[web.StreamResponse]]] = {
    "get": reads.get,
    "create": writes.create,
    "update": writes.update,
    "patch": writes.patch,
    "delete": writes.delete,
    "deletecollection": reads.delete_collection,
    "watch": watch.watch,
}
_SUB: dict[tuple[str, str], Callable[[Call], Awaitable[web.StreamResponse]]] = {
    ("status", "get"): reads.get,
    ("status", "update"): writes.update,
    ("status", "patch"): writes.patch,
    ("scale", "get"): reads.get,
    ("scale", "update"): writes.update,
    ("scale", "patch"): writes.patch,
    ("log", "get"): subresources.log,
    ("exec", "get"): subresources.exec_,
    ("exec", "create"): subresources.exec_,
    ("token", "create"): subresources.token,
    ("attach", "get"): subresources.attach,
    ("attach", "create"): subresources.attach,
    ("portforward", "get"): subresources.portforward_,
    ("portforward", "create"): subresources.portforward_,
    ("eviction", "create"): subresources.eviction,
    ("binding", "create"): subresources.binding,
    ("ephemeralcontainers", "get"): reads.get,
    ("ephemeralcontainers", "update"): writes.update,
    ("ephemeralcontainers", "patch"): writes.patch,
    ("finalize", "update"): writes.update,
    ("approval", "get"): reads.get,
    ("approval", "update"): writes.update,
    ("approval", "patch"): writes.patch,
}


async def _review(call: Call) -> web.Response:
    body = await read_object(call.request)
    if not isinstance(body, dict):
        raise StatusError(400, "the object provided is unrecognized: expected a JSON object")
    answer = reviews.answer(call.sim, call.kind.resource, body, call.user, call.target.namespace)
    return respond({"apiVersion": call.kind.api_version, "kind": call.kind.kind, **answer}, 201)


def _allowed(kind: Kind, target: Target) -> bool:
    """Whether the method fits the URL: create on a collection, update and patch on one object."""
    if target.verb not in kind.verbs:
        return False
    if target.verb == "create":
        return not target.name
    if target.verb in ("update", "patch"):
        return bool(target.name)
    return True


def _handler(call: Call, load: Any | None) -> Callable[[], Awaitable[web.StreamResponse]]:
    target, kind = call.target, call.kind
    if target.subresource:
        sub = _SUB.get((target.subresource, target.verb))
        if sub is None:
            raise nonresource.method_not_allowed()
        return lambda: sub(call)
    if not _allowed(kind, target):
        raise nonresource.method_not_allowed()
    if not kind.stored:
        return lambda: _review(call)
    if kind.namespaced and not target.namespace and target.verb not in ("list", "watch"):
        raise nonresource.not_found()
    if target.verb == "list":
        return lambda: reads.list_(call, load)
    return lambda: _MAIN[target.verb](call)


def dispatcher(sim: Simulation, load: Any | None) -> Handler:
    async def dispatch(request: web.Request) -> web.StreamResponse:
        target = request[TARGET]
        if not target.resource_request:
            return await nonresource.serve(sim, request)
        call = Call(request, sim, _kind(sim, target), target, request[USER])
        return await _handler(call, load)()

    return dispatch


def build_app(sim: Simulation, load: ReplicaLoad | None = None) -> web.Application:
    middlewares: list[Any] = [wire.negotiate, errors, security(sim)]
    if load is not None:
        overload = optional_module("chaos.sim.overload")
        if overload is not None:
            middlewares.insert(0, overload.overload_middleware(load))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
    app[SIM] = sim
    app[LOAD] = load
    metrics = getattr(load, "metrics", None)
    if metrics is not None:
        app.router.add_get("/metrics", optional_module("chaos.sim.metrics").metrics_handler(metrics.registry))
    app.router.add_route("*", "/{tail:.*}", dispatcher(sim, load))
    return app
