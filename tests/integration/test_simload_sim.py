"""Through the real `python -m chaos sim --replicas 3`: 429s past the in-flight limit, a LIST storm
crashes a replica (connections refused, its watches end), its clients move to the other replicas,
it comes back, and /metrics shows the crash."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from chaos.processes import Proc, Processes, free_ports

TOKEN = "simload-admin"


OK, REFUSED, FAILED = "ok", "refused", "failed"


class Endpoints:
    """The api-server URLs of one cluster; a client sticks to one until it fails to connect."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = list(urls)
        self._index = 0

    @property
    def current(self) -> str:
        return self.urls[self._index]

    def rotate(self) -> None:
        self._index = (self._index + 1) % len(self.urls)


async def fetch(session: aiohttp.ClientSession, endpoints: Endpoints, path: str, token: str) -> str:
    """GET one path, draining the body; the outcome, rotating to the next endpoint on refusal."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with session.get(endpoints.current + path, headers=headers) as response:
            async for _ in response.content.iter_chunked(64 * 1024):
                pass
            return OK if response.status < 400 else FAILED
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
        endpoints.rotate()
        return REFUSED
    except TimeoutError:
        return FAILED


def start(tmp_path: Path, replicas: int, *args: str) -> tuple[Processes, Proc]:
    """Run the simulator on free consecutive ports; return once every replica is serving."""
    (tmp_path / "tokens.csv").write_text(f'{TOKEN},admin,admin-uid,"system:masters"\n')
    base = free_ports(replicas)
    argv = [
        sys.executable,
        "-m",
        "chaos",
        "sim",
        "--listen",
        f"127.0.0.1:{base}",
        "--replicas",
        str(replicas),
    ]
    procs = Processes(tmp_path)
    proc = procs.spawn("sim", [*argv, "--token-file", str(tmp_path / "tokens.csv"), *args])
    deadline = time.monotonic() + 30
    while proc.log_path.read_text().count("serving ") < replicas:
        if not proc.alive or time.monotonic() > deadline:
            procs.close()
            pytest.fail(f"simulator did not start:\n{proc.log_tail()}")
        time.sleep(0.05)
    proc.urls = [f"http://127.0.0.1:{base + i}" for i in range(replicas)]
    return procs, proc


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Proc]:
    """Three replicas, 300 pods of ~2 kB (a LIST is ~0.7 MB) and a 2 MB memory budget each."""
    procs, proc = start(
        tmp_path, 3, "--seed-objects", "300", "--memory-budget-mb", "2", "--per-object-service-us", "1000",
        "--restart-delay-s", "2",
    )  # fmt: skip
    with procs:
        yield proc


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=0)) as s:
        yield s


def sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def metrics(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url + "/metrics") as r:
        return await r.text()


async def refused(url: str) -> bool:
    """Whether a fresh connection to `url` is refused."""
    try:
        async with aiohttp.ClientSession() as s, s.get(url + "/healthz") as r:
            await r.read()
            return False
    except aiohttp.ClientConnectorError:
        return True


async def storm(session: aiohttp.ClientSession, url: str, n: int = 12) -> list[str]:
    endpoints = [Endpoints([url]) for _ in range(n)]
    return await asyncio.gather(*(fetch(session, e, "/api/v1/pods", "") for e in endpoints))


async def test_list_storm_crashes_a_replica_and_its_clients_move(
    cluster: Proc, session: aiohttp.ClientSession
) -> None:
    """Replica 0 crashes under a LIST storm; a rotating client keeps succeeding on 1 and 2."""
    urls = cluster.urls
    before = await metrics(session, urls[1])
    outcomes = await storm(session, urls[0])
    assert REFUSED in outcomes
    assert await refused(urls[0])
    endpoints = Endpoints(urls)
    results = [await fetch(session, endpoints, "/api/v1/namespaces/default", "") for _ in range(20)]
    assert results.count(OK) >= 19 and endpoints.current != urls[0]
    after = await metrics(session, urls[1])
    name = "sim_requests_total"
    grown = sum(sample(after, name, replica=r) - sample(before, name, replica=r) for r in ("1", "2"))
    assert grown >= 19
    assert sample(after, "sim_crashes_total", replica="0") >= 1
    assert sample(after, "sim_replica_up", replica="0") == 0
    for _ in range(100):  # it comes back after the restart delay
        if not await refused(urls[0]):
            break
        await asyncio.sleep(0.1)
    assert sample(await metrics(session, urls[0]), "sim_replica_up", replica="0") == 1


async def test_a_watch_ends_when_its_replica_crashes(cluster: Proc, session: aiohttp.ClientSession) -> None:
    """A watch served by replica 1 ends (EOF or broken stream) when a LIST storm kills replica 1."""
    watch = await session.get(cluster.urls[1] + "/api/v1/namespaces/default/configmaps?watch=true")
    assert watch.status == 200 and not watch.content.at_eof()
    assert REFUSED in await storm(session, cluster.urls[1])
    # The stream ends (cleanly or cut mid-chunk); a watch left open would time out here instead.
    with contextlib.suppress(aiohttp.ClientPayloadError):
        await asyncio.wait_for(watch.content.read(), timeout=10)


async def test_past_the_inflight_limit_the_sim_answers_429(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Two read-only seats and a 200 ms service time: of 10 parallel GETs most get 429 + Retry-After."""
    procs, proc = start(tmp_path, 1, "--max-readonly-inflight", "2", "--base-service-ms", "200")
    with procs:

        async def get() -> tuple[int, str | None, str]:
            async with session.get(proc.urls[0] + "/api/v1/namespaces/default") as r:
                body = await r.json()
                return r.status, r.headers.get("Retry-After"), body.get("reason", "")

        results = await asyncio.gather(*(get() for _ in range(10)))
    rejected = [r for r in results if r[0] == 429]
    assert len(rejected) >= 5
    assert all(retry == "1" and reason == "TooManyRequests" for _, retry, reason in rejected)
    assert sum(1 for r in results if r[0] == 200) >= 2
