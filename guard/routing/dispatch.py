"""Routing on the wire: read a request's target, Host header and TLS server name, hand them to
`guard.routing.router`, and return the routed cluster's runtime with the request retargeted past
the `/clusters/{name}` prefix (`guard.http.server.Request.retarget`).

Python's ssl module shows a connection's server name (SNI) only to a callback during the
handshake; `remember_server_names` installs one on the serving context that notes it per TLS
object. Only the request path's first step calls in here, and it must never change anything of a
request but its target.
"""

from __future__ import annotations

import ssl
import weakref
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from guard.http.request import Request
from guard.routing.router import PREFIX, Router

R = TypeVar("R")
_SERVER_NAMES: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


class Routes(Generic[R]):
    """The runtime of every cluster of one settings generation, and the router between them."""

    def __init__(self, router: Router, runtimes: Mapping[str, R]) -> None:
        self.router = router
        self.runtimes = dict(runtimes)
        self._by_host = bool(router.hosts)

    @property
    def default(self) -> R:
        return self.runtimes[self.router.default.cluster]

    def route(self, request: Request) -> tuple[R, Request]:
        """(the routed cluster's runtime, the request as that cluster sees it: retargeted past the
        prefix). Raises UnknownCluster (a 404 Status) for `/clusters/{name}` naming no cluster."""
        target = request.raw_path
        if not self._by_host and not target.startswith(PREFIX):
            return self.default, request
        sni = server_name(request.transport) if self._by_host else None
        route = self.router.route(target, request.headers.get("Host"), sni)
        if route.target is not None:
            request.retarget(route.target)
        return self.runtimes[route.cluster], request


def remember_server_names(ctx: ssl.SSLContext) -> None:
    """Note the server name each TLS client asks for, for `server_name` (host routing by SNI)."""

    def note(ssl_object: Any, name: str | None, _: ssl.SSLContext) -> None:
        if name:
            _SERVER_NAMES[ssl_object] = name

    ctx.sni_callback = note


def server_name(transport: Any) -> str | None:
    """The server name the client sent in its TLS handshake; None for plain HTTP or no SNI."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    return _SERVER_NAMES.get(ssl_object) if ssl_object is not None else None
