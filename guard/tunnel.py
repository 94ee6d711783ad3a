"""Byte tunnels for HTTP upgrades (exec, attach, port-forward over WebSocket or SPDY).

After the api-server answers 101, both connections leave HTTP: each side's socket is handed a pipe
that writes whatever arrives straight to the other side, byte for byte, until either side closes.
It uses aiohttp's parser hand-over (`set_parser`), the same hook aiohttp's own WebSocket support
uses. It must never interpret, buffer without bound or log the tunnelled bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from guard.forward import response_headers

HIGH_WATER = 1024 * 1024
"""Bytes queued towards one side before reading from the other side pauses."""
LOW_WATER = 256 * 1024


def is_upgrade(request: web.BaseRequest) -> bool:
    if "upgrade" not in request.headers:
        return False
    return any(t.strip().lower() == "upgrade"
               for v in request.headers.getall("Connection", ()) for t in v.split(","))


def upgrade_headers(request: web.BaseRequest) -> list[tuple[str, str]]:
    """The hop-by-hop pair that must survive for an upgrade to reach the api-server."""
    return [("Connection", "Upgrade"), ("Upgrade", request.headers["Upgrade"])]


class _Pipe:
    """A parser stand-in: everything fed to it goes to `target`; EOF ends the tunnel."""

    def __init__(self, target: asyncio.BaseTransport, done: asyncio.Future[None]) -> None:
        self.target = target
        self.done = done
        self.source: asyncio.BaseTransport | None = None
        self.bytes = 0

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.target.is_closing():
            self.feed_eof()
            return False, b""
        self.target.write(data)  # type: ignore[attr-defined]
        self.bytes += len(data)
        if self.source is not None and self.target.get_write_buffer_size() > HIGH_WATER:  # type: ignore[attr-defined]
            self.source.pause_reading()  # type: ignore[attr-defined]
            asyncio.get_running_loop().create_task(self._resume_when_drained())
        return False, b""

    def feed_eof(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    async def _resume_when_drained(self) -> None:
        # aiohttp owns the transports' flow-control callbacks, so poll the buffer instead.
        while not self.target.is_closing() and self.target.get_write_buffer_size() > LOW_WATER:  # type: ignore[attr-defined]
            await asyncio.sleep(0.005)
        if self.source is not None and not self.source.is_closing():
            self.source.resume_reading()  # type: ignore[attr-defined]


async def splice(request: web.BaseRequest, upstream: aiohttp.ClientResponse,
                 add: list[tuple[str, str]]) -> tuple[web.StreamResponse, int]:
    """Answer 101 to the client and pipe bytes both ways until one side closes."""
    connection = upstream.connection
    if connection is None or connection.transport is None or request.transport is None:
        raise ConnectionResetError("a side of the tunnel closed before the upgrade")
    up_transport, client_transport = connection.transport, request.transport
    response = web.StreamResponse(status=101, reason=upstream.reason,
                                  headers=response_headers(upstream.headers, add))
    for name in ("Connection", "Upgrade"):
        if name in upstream.headers:
            response.headers[name] = upstream.headers[name]
    response.force_close()
    await response.prepare(request)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    to_client, to_upstream = _Pipe(client_transport, done), _Pipe(up_transport, done)
    to_client.source, to_upstream.source = up_transport, client_transport
    protocol: Any = connection.protocol
    protocol.set_parser(to_client, None)
    server_protocol: Any = request.protocol
    server_protocol.set_parser(to_upstream)
    server_protocol.keep_alive(False)
    try:
        await done
    finally:
        up_transport.close()
        upstream.close()
    return response, to_client.bytes + to_upstream.bytes
