"""The non-resource URLs: discovery, OpenAPI, health, OIDC discovery and the simulator's record.

It must never serve anything under /api or /apis that names a resource; those are `dispatch`'s.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chaos.sim import discovery
from chaos.sim.calls import respond
from chaos.sim.security import STATE_PATH
from chaos.sim.simulation import Simulation
from chaos.sim.status import StatusError

NOT_FOUND = "the server could not find the requested resource"


def not_found() -> StatusError:
    return StatusError(404, NOT_FOUND, details={})


def method_not_allowed() -> StatusError:
    return StatusError(405, "the server does not allow this method on the requested resource")


def _document(sim: Simulation, request: web.Request, parts: list[str]) -> Any | None:
    """The JSON document at a discovery, OpenAPI or OIDC path; None when there is none."""
    match parts:
        case ["version"]:
            return discovery.VERSION
        case ["api"]:
            return discovery.api_versions()
        case ["api", version]:
            return discovery.resource_list("", version)
        case ["apis"]:
            return discovery.api_group_list()
        case ["apis", group]:
            return discovery.api_group(group)
        case ["apis", group, version]:
            return discovery.resource_list(group, version)
        case ["openapi", "v3"]:
            return discovery.openapi_v3_root()
        case ["openapi", "v3", "api", version]:
            return discovery.openapi_v3_group_version("", version)
        case ["openapi", "v3", "apis", group, version]:
            return discovery.openapi_v3_group_version(group, version)
        case [".well-known", "openid-configuration"] if sim.issuer is not None:
            return sim.issuer.discovery(f"{request.scheme}://{request.host}")
        case ["openid", "v1", "jwks"] if sim.issuer is not None:
            return sim.issuer.jwks()
    return None


def _openapi_v2(request: web.Request) -> web.Response:
    accept = request.headers.get("Accept", "*/*")
    if "json" not in accept and "*/*" not in accept:
        # kubectl asks for protobuf; refusing makes it use its compiled-in types instead.
        raise StatusError(406, "only application/json is served", reason="NotAcceptable")
    return respond(discovery.openapi_v2())


async def serve(sim: Simulation, request: web.Request) -> web.StreamResponse:
    parts = [p for p in request.path.strip("/").split("/") if p]
    if request.path == STATE_PATH:
        if request.method == "DELETE":
            sim.recorder.reset()
        elif request.method != "GET":
            raise method_not_allowed()
        return respond(sim.recorder.state())
    if parts in (["healthz"], ["livez"], ["readyz"]):
        return web.Response(text="ok", content_type="text/plain")
    if parts == ["openapi", "v2"]:
        return _openapi_v2(request)
    document = _document(sim, request, parts)
    if document is None:
        raise not_found()
    if request.method not in ("GET", "HEAD"):
        raise method_not_allowed()
    return respond(document)
