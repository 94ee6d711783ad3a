"""Byte tunnels for HTTP upgrades (exec, attach, port-forward over WebSocket or SPDY).

After the api-server answers 101, both connections leave HTTP: each side's socket is handed a pipe
that writes whatever arrives straight to the other side, byte for byte, until either side closes.
The upstream side uses aiohttp's client parser hand-over (`set_parser`, the hook aiohttp's own
WebSocket support uses); the client side is guard.http.server's `Request.pipe`. It must never
interpret, buffer without bound or log the tunnelled bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from guard.http import answers as rawanswer
from guard.http.server import Request, pipe_bytes


def is_upgrade(request: Request) -> bool:
    if "upgrade" not in request.headers:
        return False
    return any(t.strip().lower() == "upgrade"
               for v in request.headers.getall("Connection", ()) for t in v.split(","))


def upgrade_headers(headers: CIMultiDictProxy[str]) -> list[tuple[str, str]]:
    """The hop-by-hop pair that must survive an upgrade, from the request or the 101 answer."""
    return [(name, headers[name]) for name in ("Connection", "Upgrade") if name in headers]


class _Pipe:
    """A parser stand-in for aiohttp's client protocol: everything fed to it goes to `target`."""

    def __init__(self, target: asyncio.Transport, source: asyncio.Transport,
                 done: asyncio.Future[None]) -> None:
        self.target = target
        self.source = source
        self.done = done
        self.bytes = 0

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if pipe_bytes(self.target, data, self.source.pause_reading, self._resume):
            self.bytes += len(data)
        else:
            self.feed_eof()
        return False, b""

    def feed_eof(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def _resume(self) -> None:
        if not self.source.is_closing():
            self.source.resume_reading()


async def splice(request: Request, upstream: aiohttp.ClientResponse,
                 add: list[tuple[str, str]]) -> tuple[int, int]:
    """Answer 101 to the client and pipe bytes both ways until one side closes.
    Returns (status, bytes tunnelled)."""
    connection = upstream.connection
    if connection is None or connection.transport is None or request.transport is None:
        raise ConnectionResetError("a side of the tunnel closed before the upgrade")
    up_transport, client_transport = connection.transport, request.transport
    await request.send(rawanswer.head(101, upstream.reason, upstream.headers,
                                      [*add, *upgrade_headers(upstream.headers)], drop=frozenset(),
                                      length=None, chunked=False, close=False))
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    to_client = _Pipe(client_transport, up_transport, done)
    protocol: Any = connection.protocol
    protocol.set_parser(to_client, None)
    from_client = request.pipe(up_transport, done)
    try:
        await done
    finally:
        up_transport.close()
        client_transport.close()
        upstream.close()
    return 101, to_client.bytes + from_client()
