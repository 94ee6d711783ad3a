"""An upgrade request's `Connection` header cannot strip guard's own headers upstream.

A hop that follows RFC 9110 drops every header the received `Connection` names. If guard passed a
client's `Connection: Upgrade, Impersonate-User, Impersonate-Group` on, such a hop would drop the
`Impersonate-*` guard adds and leave guard's own credential alone: the exec would run as guard. guard
asks for the upgrade with its own `Connection: Upgrade` only (guard.http.tunnel)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.proxy_fakes import (
    GUARD_TOKEN,
    USERS,
    FakeApiServer,
    Record,
    RunningGuard,
    start_guard,
    write_settings,
)

EXEC = "/api/v1/namespaces/a/pods/p/exec?command=id"
UPGRADE = ("Connection: Upgrade, Impersonate-User, Impersonate-Group\r\nUpgrade: websocket\r\n"
           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n")


class DroppingHop(FakeApiServer):
    """An api-server behind a standards-following hop: the headers `Connection` names are gone
    before it decides who the caller is, which it tells over the WebSocket (`as:<user>`)."""

    async def exec(self, request: web.Request) -> web.WebSocketResponse:
        self.seen.append(Record(request.method, request.path_qs, list(request.headers.items())))
        named = {t.strip().lower() for v in request.headers.getall("Connection", ()) for t in v.split(",")}
        kept = {k.lower(): v for k, v in request.headers.items() if k.lower() not in named}
        token = kept.get("authorization", "").removeprefix("Bearer ")
        user = kept.get("impersonate-user") or ("guard" if token == GUARD_TOKEN else
                                                 USERS.get(token, {}).get("username", "anonymous"))
        ws = web.WebSocketResponse(protocols=("v5.channel.k8s.io",))
        await ws.prepare(request)
        await ws.send_str(f"as:{user}")
        await ws.close()
        return ws


@pytest.fixture
async def hop() -> AsyncIterator[DroppingHop]:
    fake = DroppingHop()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def guard(tmp_path: Path, hop: DroppingHop) -> AsyncIterator[RunningGuard]:
    running = await start_guard(write_settings(tmp_path, [hop.url], forwarding="impersonate"))
    yield running
    await running.server.stop()


async def _exec_as(url: str, token: str) -> bytes:
    """Ask for an exec upgrade naming Impersonate-* in Connection; what the api-server said."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {EXEC} HTTP/1.1\r\nHost: guard\r\nAuthorization: Bearer {token}\r\n"
                 f"{UPGRADE}\r\n".encode())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101 "), head
        frames = await asyncio.wait_for(reader.read(1024), 10)
    finally:
        writer.close()
    return frames[frames.index(b"as:"):].split(b"\x88")[0]  # up to the close frame


async def test_the_dropping_hop_does_drop_what_connection_names(hop: DroppingHop) -> None:
    """Without guard in between, the hop's rule turns guard's credential plus a named
    Impersonate-User into guard itself: the test below can fail."""
    host, port = hop.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {EXEC} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {GUARD_TOKEN}\r\n"
                 f"Impersonate-User: mallory\r\n{UPGRADE}\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    frames = await asyncio.wait_for(reader.read(1024), 10)
    writer.close()
    assert b"as:guard" in frames


async def test_a_client_naming_impersonate_headers_in_connection_does_not_become_guard(
        guard: RunningGuard, hop: DroppingHop) -> None:
    """mallory (no RBAC at all) asks for an exec with `Connection: Upgrade, Impersonate-User,
    Impersonate-Group`: the api-server still sees mallory, and guard sent `Connection: Upgrade` only."""
    assert await _exec_as(guard.url, "mallory-token") == b"as:mallory"
    (record,) = [r for r in hop.seen if "/exec" in r.path]
    assert record.header("Connection") == ["Upgrade"]
    assert record.header("Impersonate-User") == ["mallory"]
