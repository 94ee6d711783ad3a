"""Byte tunnels for HTTP upgrades (exec, attach, port-forward over WebSocket or SPDY).

After the api-server answers 101, both connections leave HTTP: each side's socket is handed a pipe
that writes whatever arrives straight to the other side, byte for byte, until either side closes
(guard.http.pipes does the flow control). The client side is `server.Request.pipe`, the api-server
side `client.Response.pipe`. Upstream, guard asks for the upgrade with its own `Connection: Upgrade`
only: a client's `Connection` header may name headers that a hop after guard would strip, guard's
`Impersonate-*` among them. It must never interpret, buffer without bound or log the tunnelled bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from multidict import CIMultiDictProxy

from guard.http import answers
from guard.http.client import Response
from guard.http.request import Request


def upgrade_request_headers(headers: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    """What asks the api-server for the upgrade: guard's own `Connection: Upgrade` (never the
    client's list) and the protocol the client asked for."""
    return [("Connection", "Upgrade"), ("Upgrade", headers.get("Upgrade", ""))]


def _upgrade_answer_headers(headers: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    """The hop-by-hop pair a 101 must carry to the client: the protocol switched to."""
    return [("Connection", "Upgrade"), *[("Upgrade", v) for v in headers.getall("Upgrade", ())]]


async def splice(request: Request, upstream: Response, add: Sequence[tuple[str, str]]) -> tuple[int, int]:
    """Answer 101 to the client and pipe bytes both ways until one side closes.
    Returns (status, bytes tunnelled)."""
    up_transport, client_transport = upstream.transport, request.transport
    if up_transport is None or client_transport is None:
        raise ConnectionResetError("a side of the tunnel closed before the upgrade")
    await request.send(answers.head(101, upstream.reason, upstream.headers,
                                    [*add, *_upgrade_answer_headers(upstream.headers)], drop=frozenset(),
                                    length=None, chunked=False, close=False))
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    to_client = upstream.pipe(client_transport, done)
    from_client = request.pipe(up_transport, done, to_client)
    try:
        await done
    finally:
        up_transport.close()
        client_transport.close()
        upstream.close()
    return 101, to_client() + from_client()
