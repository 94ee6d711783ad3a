"""Content negotiation: which encoding an answer goes out in, and the middleware that re-encodes it.

Handlers answer JSON. When the request's Accept prefers `application/vnd.kubernetes.protobuf`
(client-go's `application/vnd.kubernetes.protobuf, application/json`), this middleware turns an
ordinary JSON answer whose kind has a protobuf message (an object, a list, a Status) into the
api-server's protobuf; anything else (Tables, discovery, custom resources, streams) stays as it
is. JSON clients pay nothing. It must never change what an answer says, only how it is spelled.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from chaos.sim import protobuf, protojson

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_JSON_TYPES = frozenset({"application/json", "application/*", "*/*"})


def _ranges(accept: str) -> list[tuple[float, int, str, str]]:
    """(-q, position, media type, parameters) of each media range, best first."""
    out = []
    for position, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        rest = ";".join(p for p in params if not p.startswith("q="))
        out.append((-q, position, media.lower(), rest))
    return sorted(out)


def wants_protobuf(accept: str) -> bool:
    """Whether the best acceptable plain encoding is protobuf (Table and other `as=` views are JSON)."""
    for _, _, media, params in _ranges(accept or ""):
        if "as=" in params:
            return False
        if media == protobuf.CONTENT_TYPE:
            return True
        if media in _JSON_TYPES:
            return False
    return False


def _reencode(response: web.Response) -> web.Response:
    try:
        body = json.loads(response.body)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return response
    encoded = protojson.encode_object(body) if isinstance(body, dict) else None
    if encoded is None:
        return response
    out = web.Response(status=response.status, body=encoded, content_type=protobuf.CONTENT_TYPE)
    for name, value in response.headers.items():
        if name.lower() not in ("content-type", "content-length"):
            out.headers.add(name, value)
    return out


@web.middleware
async def negotiate(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if (
        isinstance(response, web.Response)
        and not response.prepared
        and response.content_type == "application/json"
        and wants_protobuf(request.headers.get("Accept", ""))
    ):
        return _reencode(response)
    return response
