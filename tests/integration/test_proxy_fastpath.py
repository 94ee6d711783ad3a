"""guard's lean upstream client (guard.http.client): pooled connection reuse, stale-connection
retry, byte-exact chunked and large bodies, watches chunk by chunk, and more concurrent watches than
the old pool cap."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from guard.http import client as http_client
from guard.http.pool import Pool
from tests.proxy_fakes import RunningGuard, start_guard, write_settings

TOKEN = {"Authorization": "Bearer alice-token"}
REVIEW = "/apis/authentication.k8s.io/v1/tokenreviews"


def pattern(size: int) -> bytes:
    """Deterministic bytes that differ at every offset modulo 251, so a lost or doubled chunk shows."""
    return bytes(i % 251 for i in range(size))


class Upstream:
    """A small api-server stand-in that notes which upstream connection carried each request."""

    def __init__(self) -> None:
        self.peers: list[int] = []
        self.events: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.watching = 0
        self.release_watches = asyncio.Event()
        self.url = ""
        self._runner: web.ServerRunner | None = None

    async def start(self) -> None:
        self._runner = web.ServerRunner(web.Server(self.handle), shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        self.release_watches.set()
        await self.events.put(None)
        assert self._runner is not None
        await self._runner.cleanup()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == REVIEW:
            user = {"username": "alice", "uid": "u-alice", "groups": ["team-a"]}
            return web.json_response({"status": {"authenticated": True, "user": user}})
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername")[1])
        if request.query.get("watch") == "true":
            return await self.watch(request)
        if request.path == "/chunked":
            return await self.stream(request, pattern(int(request.query["bytes"])), chunked=True)
        if request.path == "/large":
            return await self.stream(request, pattern(int(request.query["bytes"])), chunked=False)
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"sha256": digest.hexdigest(), "bytes": size})

    async def stream(self, request: web.BaseRequest, data: bytes, *, chunked: bool) -> web.StreamResponse:
        response = web.StreamResponse()
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(data)
        await response.prepare(request)
        for i in range(0, len(data), 100_000):
            await response.write(data[i:i + 100_000])
        await response.write_eof()
        return response

    async def watch(self, request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"type":"ADDED","object":{"metadata":{"name":"first"}}}\n')
        if request.query.get("shared") == "yes":
            self.watching += 1
            await self.release_watches.wait()
        else:
            while (event := await self.events.get()) is not None:
                await response.write(event)
        await response.write_eof()
        return response


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    fake = Upstream()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def guard(tmp_path: Path, upstream: Upstream) -> AsyncIterator[RunningGuard]:
    running = await start_guard(write_settings(tmp_path, [upstream.url]))
    yield running
    await running.server.stop()


async def test_sequential_requests_reuse_one_upstream_connection(
        guard: RunningGuard, upstream: Upstream) -> None:
    """40 requests one after another reach the api-server over a single pooled connection."""
    async with aiohttp.ClientSession() as client:
        for _ in range(40):
            async with client.get(guard.url + "/api/v1/namespaces/a/pods/p", headers=TOKEN) as r:
                assert r.status == 200
                await r.read()
    assert len(upstream.peers) == 40
    assert len(set(upstream.peers)) == 1


async def test_concurrent_requests_use_at_most_one_connection_each(
        guard: RunningGuard, upstream: Upstream) -> None:
    """8 callers x 10 requests each need no more than 8 upstream connections."""
    async def caller(client: aiohttp.ClientSession) -> None:
        for _ in range(10):
            async with client.get(guard.url + "/api/v1/pods", headers=TOKEN) as r:
                assert r.status == 200
                await r.read()

    async with aiohttp.ClientSession() as client:
        await asyncio.gather(*(caller(client) for _ in range(8)))
    assert len(upstream.peers) == 80
    assert 1 <= len(set(upstream.peers)) <= 8


@pytest.mark.parametrize("size", [0, 1, 70_000, 3_000_000])
async def test_request_bodies_arrive_byte_exact(guard: RunningGuard, upstream: Upstream, size: int) -> None:
    """Small bodies (one write with the head) and streamed ones reach the api-server unchanged."""
    body = pattern(size)
    url = guard.url + "/api/v1/namespaces/a/configmaps"
    async with aiohttp.ClientSession() as client, client.post(url, data=body, headers=TOKEN) as r:
        assert r.status == 200
        answer = await r.json()
    assert answer == {"sha256": hashlib.sha256(body).hexdigest(), "bytes": size}


@pytest.mark.parametrize(("path", "size"), [("/chunked", 10), ("/chunked", 2_500_000),
                                            ("/large", 50_000), ("/large", 6_000_000)])
async def test_response_bodies_arrive_byte_exact(guard: RunningGuard, path: str, size: int) -> None:
    """Chunked and Content-Length answers, small and large, reach the client unchanged."""
    url = f"{guard.url}{path}?bytes={size}"
    async with aiohttp.ClientSession() as client, client.get(url, headers=TOKEN) as r:
        assert r.status == 200
        assert await r.read() == pattern(size)


async def test_a_watch_streams_event_by_event(guard: RunningGuard, upstream: Upstream) -> None:
    """Each watch event reaches the client before the api-server sends the next one."""
    url = guard.url + "/api/v1/pods?watch=true"
    async with aiohttp.ClientSession() as client, client.get(url, headers=TOKEN) as r:
        assert b"first" in await asyncio.wait_for(r.content.readline(), 5)
        for n in range(3):
            await upstream.events.put(b'{"type":"MODIFIED","n":%d}\n' % n)
            assert b'"n":%d' % n in await asyncio.wait_for(r.content.readline(), 5)


async def test_more_watches_than_the_old_pool_cap_all_get_their_first_event(
        guard: RunningGuard, upstream: Upstream) -> None:
    """1,200 concurrent watches (the old pool stopped at 1,000) each receive their first event."""
    async def watch(client: aiohttp.ClientSession) -> bytes:
        response = await client.get(guard.url + "/api/v1/pods?watch=true&shared=yes", headers=TOKEN)
        return await response.content.readline()

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as client:
        firsts = await asyncio.wait_for(asyncio.gather(*(watch(client) for _ in range(1200))), 60)
        assert sum(b"first" in line for line in firsts) == 1200
        assert upstream.watching == 1200
        upstream.release_watches.set()


class _Stale(asyncio.Protocol):
    """Answers the first request on each connection, then closes on the next without a word."""

    connections = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.requests = transport, 0
        _Stale.connections += 1

    def data_received(self, data: bytes) -> None:
        self.requests += data.count(b"\r\n\r\n")
        if self.requests > 1:
            self.transport.close()
        else:
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture
async def stale_server() -> AsyncIterator[int]:
    _Stale.connections = 0
    server = await asyncio.get_running_loop().create_server(_Stale, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def test_a_stale_pooled_connection_is_retried_for_idempotent_requests(stale_server: int) -> None:
    """A GET whose pooled connection the server dropped succeeds on a fresh one; a POST is not
    replayed and fails."""
    pool = Pool("127.0.0.1", stale_server, ssl_context=None, connect_timeout=5)
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(3):
        response = await pool.request("GET", head, None, retry_stale=True)
        assert await response.read() == b"ok"
        response.release()
    assert pool.opened == 3  # every reuse hit a dropped connection and was retried on a new one
    with pytest.raises(http_client.ConnectionBroken):
        await pool.request("POST", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"",
                           retry_stale=False)
    pool.close()


async def test_a_refused_connection_is_a_connect_failure() -> None:
    """Nothing listening → ConnectFailed (guard then tries the next endpoint), not a hang."""
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = Pool("127.0.0.1", port, ssl_context=None, connect_timeout=5)
    with pytest.raises(http_client.ConnectFailed):
        await pool.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None)
