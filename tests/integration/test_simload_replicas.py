"""Simulated api-server replicas answer 429 past their in-flight limit, crash past their memory
budget (refusing connections, ending watches), come back, and shed load onto their siblings.

These run a tiny stand-in app behind the real overload middleware and ReplicaSet, on real sockets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from chaos.sim.metrics import metrics_handler
from chaos.sim.options import SimOptions
from chaos.sim.overload import ReplicaLoad, overload_middleware
from chaos.sim.replicas import ReplicaSet

LIST_OBJECTS = 100
LIST_BYTES = 200_000


def standin_app(load: ReplicaLoad) -> web.Application:
    """Just enough api-server: GET one pod, LIST pods (charging the load), watch pods, /metrics."""
    app = web.Application(middlewares=[overload_middleware(load)])

    async def get_pod(request: web.Request) -> web.Response:
        return web.json_response({"kind": "Pod", "metadata": {"name": request.match_info["name"]}})

    async def list_pods(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") == "true":
            return await watch_pods(request)
        await load.serve_list(LIST_OBJECTS, LIST_BYTES)
        return web.json_response({"kind": "PodList", "items": []})

    async def watch_pods(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"type":"ADDED","object":{"kind":"Pod"}}\n')
        while True:
            await asyncio.sleep(3600)

    app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", get_pod)
    app.router.add_get("/api/v1/pods", list_pods)
    app.router.add_get("/metrics", metrics_handler(load.metrics.registry))
    return app


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        yield s


async def started(options: SimOptions) -> ReplicaSet:
    replicas = ReplicaSet(options, standin_app, None)
    await replicas.start()
    return replicas


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    """The HTTP status, or 0 when the connection was refused or dropped."""
    try:
        async with session.get(url) as r:
            await r.read()
            return r.status
    except aiohttp.ClientError:
        return 0


async def wait_until_up(session: aiohttp.ClientSession, url: str, attempts: int = 100) -> bool:
    for _ in range(attempts):
        if await status_of(session, url) == 200:
            return True
        await asyncio.sleep(0.1)
    return False


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output, 0 when absent."""
    for line in metrics_text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(part.split("=", 1) for part in line[len(name) + 1 : line.index("}")].split(","))
        if all(got.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_past_the_inflight_limit_requests_get_429_with_retry_after(
    session: aiohttp.ClientSession,
) -> None:
    """Ten simultaneous GETs on a replica with two read-only seats: some get a 429 Status."""
    replicas = await started(SimOptions(port=0, max_readonly_inflight=2, base_service_ms=300.0))
    url = replicas.urls[0] + "/api/v1/namespaces/a/pods/p"
    try:

        async def get() -> tuple[int, str | None, dict[str, object]]:
            async with session.get(url) as r:
                return r.status, r.headers.get("Retry-After"), json.loads(await r.text())

        results = await asyncio.gather(*(get() for _ in range(10)))
    finally:
        await replicas.stop()
    rejected = [(retry, body) for code, retry, body in results if code == 429]
    assert sum(1 for code, _, _ in results if code == 200) >= 2
    assert len(rejected) >= 5
    assert all(retry == "1" for retry, _ in rejected)
    assert all(body["reason"] == "TooManyRequests" and body["kind"] == "Status" for _, body in rejected)


async def test_watches_hold_no_seat(session: aiohttp.ClientSession) -> None:
    """With one read-only seat and three open watches, a GET still succeeds."""
    replicas = await started(SimOptions(port=0, max_readonly_inflight=1))
    base = replicas.urls[0]
    try:
        watches = [await session.get(base + "/api/v1/pods?watch=true") for _ in range(3)]
        for w in watches:
            assert w.status == 200
            await w.content.readline()
        assert await status_of(session, base + "/api/v1/namespaces/a/pods/p") == 200
        for w in watches:
            w.close()
    finally:
        await replicas.stop()


async def test_list_storm_past_memory_budget_crashes_and_the_replica_comes_back(
    session: aiohttp.ClientSession,
) -> None:
    """Concurrent 200 kB LISTs against a 0.5 MB budget crash the replica; it refuses, then returns."""
    options = SimOptions(port=0, memory_budget_mb=0.5, per_object_service_us=2000.0, restart_delay_s=1.0)
    replicas = await started(options)
    base = replicas.urls[0]
    try:
        codes = await asyncio.gather(*(status_of(session, base + "/api/v1/pods") for _ in range(8)))
        assert 0 in codes  # the LIST that blew the budget had its connection dropped
        assert replicas.loads[0].crashes == 1
        assert not replicas.loads[0].up
        with pytest.raises(aiohttp.ClientConnectorError):
            async with aiohttp.ClientSession() as fresh, fresh.get(base + "/metrics"):
                pass
        assert await wait_until_up(session, base + "/api/v1/namespaces/a/pods/p")
        assert replicas.loads[0].up and replicas.loads[0].list_bytes == 0
        async with session.get(base + "/metrics") as r:
            text = await r.text()
        assert sample(text, "sim_crashes_total", replica="0") == 1.0
        assert sample(text, "sim_replica_up", replica="0") == 1.0
    finally:
        await replicas.stop()


async def test_an_open_watch_ends_when_its_replica_crashes(session: aiohttp.ClientSession) -> None:
    """The watcher sees its stream end (EOF or a payload error) once the replica is killed."""
    replicas = await started(SimOptions(port=0, restart_delay_s=0.5))
    try:
        watch = await session.get(replicas.urls[0] + "/api/v1/pods?watch=true")
        assert b"ADDED" in await watch.content.readline()
        crash = asyncio.create_task(replicas.crash(0))
        ended = False
        try:
            rest = await asyncio.wait_for(watch.content.read(), timeout=10)
            ended = rest == b""
        except aiohttp.ClientPayloadError:
            ended = True
        assert ended
        await crash
        assert replicas.loads[0].up
    finally:
        await replicas.stop()


async def test_a_crashed_replicas_clients_move_to_the_others(session: aiohttp.ClientSession) -> None:
    """A client rotating endpoints on connection errors keeps succeeding; the others serve it."""
    replicas = await started(SimOptions(port=0, replicas=3, restart_delay_s=2.0))
    urls = replicas.urls
    try:
        replicas.loads[0].crash_soon()  # what a blown memory budget does
        for _ in range(50):  # wait until replica 0 stopped listening
            if await status_of(session, urls[0] + "/healthz") == 0:
                break
            await asyncio.sleep(0.05)
        successes, index = 0, 0
        for _ in range(30):
            code = await status_of(session, urls[index % 3] + "/api/v1/namespaces/a/pods/p")
            if code == 200:
                successes += 1
            else:
                index += 1  # rotate to the next endpoint, as a multi-endpoint client does
        assert successes == 30 - index and successes >= 28
        assert not replicas.loads[0].up
        async with session.get(urls[1] + "/metrics") as r:
            text = await r.text()
        served_by_others = sum(sample(text, "sim_requests_total", replica=str(i), verb="GET") for i in (1, 2))
        assert served_by_others >= 28
        assert sample(text, "sim_requests_total", replica="0", verb="GET") == 0.0
        assert sample(text, "sim_crashes_total", replica="0") == 1.0
        assert sample(text, "sim_replica_up", replica="0") == 0.0
    finally:
        await replicas.stop()
