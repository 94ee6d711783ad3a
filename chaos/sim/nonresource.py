"""The non-resource URLs: discovery, OpenAPI, health, OIDC discovery and the simulator's record.

It must never serve anything under /api or /apis that names a resource; those are `dispatch`'s.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from aiohttp import web

from chaos.sim import crds, discovery, openapi
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
    kinds = crds.served(sim.store)
    match parts:
        case ["version"]:
            return discovery.VERSION
        case ["api"]:
            return discovery.api_versions()
        case ["api", version]:
            return discovery.resource_list(kinds, "", version)
        case ["apis"]:
            return discovery.api_group_list(kinds)
        case ["apis", group]:
            return discovery.api_group(kinds, group)
        case ["apis", group, version]:
            return discovery.resource_list(kinds, group, version)
        case ["openapi", "v3"]:
            return openapi.v3_root(kinds)
        case [".well-known", "openid-configuration"] if sim.issuer is not None:
            return sim.issuer.discovery(f"{request.scheme}://{request.host}")
        case ["openid", "v1", "jwks"] if sim.issuer is not None:
            return sim.issuer.jwks()
    return None


@lru_cache(maxsize=64)
def _cached(name: str, kinds: tuple[Any, ...], group: str = "", version: str = "") -> str | None:
    """Big documents, encoded once per set of kinds served."""
    if name == "v2":
        return json.dumps(openapi.v2(list(kinds)), separators=(",", ":"))
    doc = openapi.v3_group_version(list(kinds), group, version)
    return None if doc is None else json.dumps(doc, separators=(",", ":"))


def _openapi(sim: Simulation, request: web.Request, parts: list[str]) -> web.Response | None:
    kinds = tuple(crds.served(sim.store))
    match parts:
        case ["openapi", "v2"] | ["swagger.json"]:
            return _openapi_v2(request, kinds)
        case ["openapi", "v3", "api", version]:
            text = _cached("v3", kinds, "", version)
        case ["openapi", "v3", "apis", group, version]:
            text = _cached("v3", kinds, group, version)
        case _:
            return None
    if text is None:
        raise not_found()
    return web.Response(text=text, content_type="application/json")


def _aggregated(sim: Simulation, request: web.Request, parts: list[str]) -> web.Response | None:
    version = discovery.aggregated_version(request.headers.get("Accept", ""))
    if parts not in (["api"], ["apis"]) or version is None:
        return None
    doc = discovery.aggregated(crds.served(sim.store), core=parts == ["api"], version=version)
    content_type = discovery.AGGREGATED.format(version=version)
    return web.Response(text=json.dumps(doc), headers={"Content-Type": content_type})


OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"  # asked for with "@v1.0"


def _openapi_v2(request: web.Request, kinds: tuple[Any, ...]) -> web.Response:
    accept = request.headers.get("Accept", "*/*")
    if "protobuf" in accept.split(",")[0] or ("json" not in accept and "*/*" not in accept):
        # kubectl 1.27/1.28 `apply --server-side` reads the v2 document as gnostic protobuf; it needs
        # the document, not its schemas (it validates on the server), so the skeleton is served.
        return web.Response(body=openapi.v2_protobuf_skeleton(), content_type=OPENAPI_V2_PROTOBUF)
    return web.Response(text=_cached("v2", kinds), content_type="application/json")


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
    special = _aggregated(sim, request, parts) or _openapi(sim, request, parts)
    if special is not None:
        return special
    document = _document(sim, request, parts)
    if document is None:
        raise not_found()
    if request.method not in ("GET", "HEAD"):
        raise method_not_allowed()
    return respond(document)
