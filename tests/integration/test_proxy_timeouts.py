"""`guard serve` against clients that hold what they were given: a body that never arrives
(`limits.bodyTimeout`), an answer never read (`limits.writeTimeout`). Each holds a priority-level
seat, an upstream exchange and an in-flight slot only until its timeout; then a well-behaved request
that queued behind them is served. A watch whose client reads stays up for as long as it likes,
idle or busy; one whose client stops reading while events wait is cut."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.attacks import close_all, closed_by_peer, slow_bodies, slow_readers
from tests.conftest import SimServer
from tests.proxy_fakes import FakeApiServer, GuardProcess, event, write_settings
from tests.scrape import figures

SEATS = 4
ALICE = {"Authorization": "Bearer alice-token"}
POLICY = """apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {name: team-a}
spec:
  subjects: [{kind: Group, name: team-a}]
  rules:
    - {name: all, quota: {rate: 1000/s, burst: 1000}, priorityLevel: tight}
"""
ADMISSION = f"""admission:
  priorityLevels:
    - {{name: tight, seats: {SEATS}, maxQueueWait: 20s}}
    - {{name: global-default}}
    - {{name: catch-all, seats: 5}}
limits: {{bodyTimeout: 1s, writeTimeout: 1s}}
"""


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def guard(tmp_path: Path, api: FakeApiServer) -> AsyncIterator[GuardProcess]:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "team-a.yaml").write_text(POLICY)
    extra = f"policies: {tmp_path / 'policies'}\n{ADMISSION}"
    process = await GuardProcess(write_settings(tmp_path, [api.url], extra=extra)).start()
    yield process
    await process.stop()


async def _seats_and_flights(guard: GuardProcess) -> tuple[float, float]:
    seen = await figures(guard.admin)
    seats = seen['guard_admission_seats_in_use{priority_level="tight"}']
    flights = sum(v for k, v in seen.items() if k.startswith("guard_requests_in_flight{"))
    return seats, flights


async def _until(check: object, tries: int = 300) -> None:
    assert callable(check)
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.1)


async def test_bodies_that_never_arrive_give_their_seats_back(guard: GuardProcess) -> None:
    """4 POSTs announce 100 kB and send 4 bytes, filling the level's 4 seats; a GET queued behind
    them is served once bodyTimeout has passed; each POST got its 408 and its connection closed;
    no seat and no upstream request is left."""
    host, port = guard.url.removeprefix("http://").rsplit(":", 1)
    socks = await slow_bodies(host, int(port), SEATS, "/api/v1/namespaces/a/configmaps")
    try:
        await _until(lambda: _holding(guard, SEATS))
        assert (await _seats_and_flights(guard))[0] == SEATS
        async with aiohttp.ClientSession() as session, session.get(
                guard.url + "/api/v1/namespaces/a/pods", headers=ALICE) as answer:
            assert answer.status == 200
        await _until(lambda: _closed(socks))
        answers = [_answer(sock) for sock in socks]
    finally:
        close_all(socks)
    assert answers == [b"HTTP/1.1 408 Request Timeout"] * SEATS
    assert (await figures(guard.admin))["guard_connections_body_timeouts_total"] == SEATS
    assert await _seats_and_flights(guard) == (0, 0)


async def test_answers_never_read_give_their_seats_and_upstream_back(
        guard: GuardProcess, api: FakeApiServer) -> None:
    """4 clients ask for 64 MB and read nothing, filling the level's 4 seats and 4 upstream
    exchanges; after writeTimeout each is cut, a GET queued behind them is served, and guard holds
    no seat and no request at the api-server any more."""
    host, port = guard.url.removeprefix("http://").rsplit(":", 1)
    socks = await slow_readers(host, int(port), SEATS, f"/big?bytes={64 << 20}")
    try:
        await _until(lambda: _holding(guard, SEATS))
        assert await _seats_and_flights(guard) == (SEATS, SEATS)
        async with aiohttp.ClientSession() as session, session.get(
                guard.url + "/api/v1/namespaces/a/pods", headers=ALICE) as answer:
            assert answer.status == 200
        await _until(lambda: _counted(guard, "guard_connections_write_timeouts_total", SEATS))
        closed = closed_by_peer(socks)
    finally:
        close_all(socks)
    assert closed == SEATS
    assert (await figures(guard.admin))["guard_connections_write_timeouts_total"] == SEATS
    assert await _seats_and_flights(guard) == (0, 0)


class ScriptedWatches(FakeApiServer):
    """Every watch gets its own stream: EVENTS events of 4 kB, a pause of IDLE seconds, "last"."""

    async def watch(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for i in range(EVENTS):
                await response.write(event("ADDED", f"p{i}-" + "x" * 4000))
                await asyncio.sleep(0.005)
            await asyncio.sleep(IDLE)
            await response.write(event("ADDED", "last"))
            await response.write_eof()
        return response


EVENTS, IDLE = 500, 2.5


@pytest.fixture
async def watching(tmp_path: Path) -> AsyncIterator[GuardProcess]:
    fake = ScriptedWatches()
    await fake.start()
    limits = "limits: {writeTimeout: 1s}\n"
    process = await GuardProcess(write_settings(tmp_path, [fake.url], extra=limits)).start()
    yield process
    await process.stop()
    await fake.stop()


async def test_a_watch_that_is_read_lives_on_and_one_that_is_not_is_cut(watching: GuardProcess) -> None:
    """Two watches are each sent 500 events of 4 kB (over a few writeTimeouts), then nothing for
    more than twice writeTimeout, then a last event: the one read gets all 501 events; the one
    whose client reads nothing is cut (one write timeout)."""
    host, port = watching.url.removeprefix("http://").rsplit(":", 1)
    (stalled,) = await slow_readers(host, int(port), 1, "/api/v1/pods?watch=true")
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
    writer.write(b"GET /api/v1/pods?watch=true HTTP/1.1\r\nHost: guard\r\n"
                 b"Authorization: Bearer alice-token\r\n\r\n")
    stream = bytearray()
    try:
        while not stream.endswith(b"0\r\n\r\n"):
            chunk = await asyncio.wait_for(reader.read(1 << 16), 30)
            if not chunk:
                break
            stream.extend(chunk)
        cut = closed_by_peer([stalled])
    finally:
        writer.close()
        close_all([stalled])
    assert stream.startswith(b"HTTP/1.1 200 OK")
    assert stream.count(b'"ADDED"') == EVENTS + 1 and b'"last"' in stream
    assert cut == 1
    assert (await figures(watching.admin))["guard_connections_write_timeouts_total"] == 1


async def _holding(guard: GuardProcess, seats: int) -> bool:
    return (await _seats_and_flights(guard))[0] >= seats


async def _counted(guard: GuardProcess, name: str, count: int) -> bool:
    return (await figures(guard.admin))[name] >= count


async def _closed(socks: list[socket.socket]) -> bool:
    return all(_peek_closed(sock) for sock in socks)


def _peek_closed(sock: socket.socket) -> bool:
    try:
        data = sock.recv(1 << 16, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return data == b"" or b"\r\n\r\n" in data  # closed, or the answer (a 408) is in


def _answer(sock: socket.socket) -> bytes:
    return sock.recv(1 << 16).split(b"\r\n", 1)[0]


async def test_readers_that_stop_through_guard_give_the_api_servers_seats_back(
        tmp_path: Path, sim_server: Callable[..., SimServer]) -> None:
    """The simulator holds a read-only seat until an answer is written, like an api-server: three
    clients that stop reading 8 MB LISTs through guard fill its three seats (a probe gets the
    simulator's 429); after writeTimeout guard cuts them and closes their upstream exchanges, and
    the probe gets 200."""
    sim = sim_server("--seed-objects", "1000", "--seed-object-bytes", "8192", "--max-readonly-inflight", "3")
    config = tmp_path / "guard.yaml"
    config.write_text(f"listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nclusters:\n  - name: sim\n"
                      f"    server: {sim.url}\n    token: {sim.tokens['admin']}\n"
                      f"limits: {{writeTimeout: 1s}}\naccessLog: {{enabled: false}}\n")
    guard = await GuardProcess(config).start()
    host, port = guard.url.removeprefix("http://").rsplit(":", 1)
    probe = f"{guard.url}/api/v1/namespaces/seed-1/pods/seed-1"
    headers = {"Authorization": f"Bearer {sim.tokens['admin']}"}
    socks: list[socket.socket] = []
    try:
        socks = await slow_readers(host, int(port), 3, "/api/v1/pods", token=sim.tokens["admin"])
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(probe) as answer:
                held = answer.status
            await _until(lambda: _counted(guard, "guard_connections_write_timeouts_total", 3))
            async with session.get(probe) as answer:
                freed = answer.status
    finally:
        close_all(socks)
        await guard.stop()
    assert (held, freed) == (429, 200)
