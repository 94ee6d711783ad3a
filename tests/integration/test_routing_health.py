"""Endpoint health with real parts: a simulated cluster of two api-server replicas behind one guard, the
second behind a TCP fault proxy that refuses or blackholes. The simulator's per-replica request
counts show a dead endpoint taken out of rotation, and back with a small share first (slow start)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chaos.faults import FaultProxy
from chaos.observe import parse_metrics
from tests.conftest import SimServer
from tests.proxy_fakes import GuardProcess, RunningGuard, start_guard

POD = "/api/v1/namespaces/team-a/pods/missing"


@dataclass
class Cluster:
    sim: SimServer
    proxy: FaultProxy
    guard: GuardProcess | RunningGuard
    session: aiohttp.ClientSession

    @property
    def flaky(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    async def gets(self, n: int) -> list[int]:
        """n GETs as alice, one after another."""
        out = []
        for _ in range(n):
            async with self.session.get(self.guard.url + POD,
                                        headers={"Authorization": f"Bearer {self.sim.tokens['alice']}"}) as r:
                await r.read()
                out.append(r.status)
        return out

    async def served(self) -> tuple[int, int]:
        """GETs each replica answered so far (TokenReviews are POSTs; health checks are not counted)."""
        async with self.session.get(self.sim.url + "/metrics") as r:
            samples = parse_metrics(await r.text())
        counts = [0, 0]
        for name, labels, value in samples:
            if name == "sim_requests_total" and labels["verb"] == "GET":
                counts[int(labels["replica"])] += int(value)
        return counts[0], counts[1]

    async def endpoint(self) -> dict[str, Any]:
        """The flaky endpoint as /debug/guard/upstreams shows it."""
        async with self.session.get(self.guard.admin + "/debug/guard/upstreams") as r:
            page = await r.json()
        return next(e for e in page["clusters"][0]["endpoints"] if e["url"] == self.flaky)

    async def wait_state(self, state: str) -> dict[str, Any]:
        for _ in range(300):  # bounded polling for an asynchronous change, not a timing assertion
            found = await self.endpoint()
            if found["state"] == state:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"the endpoint never became {state}: {await self.endpoint()}")


def _config(tmp_path: Path, servers: list[str], token: str, health: str) -> Path:
    config = tmp_path / "guard.yaml"
    config.write_text(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nclusters:\n  - name: sim\n"
        f"    servers: [{', '.join(servers)}]\n    token: {token}\n"
        f"    health: {{{health}}}\naccessLog: {{enabled: false}}\n")
    return config


@pytest.fixture
async def cluster(sim_server: Callable[..., SimServer], tmp_path: Path,
                  request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """`request.param`: (health settings, whether the healthy replica is an endpoint too)."""
    health, both = request.param
    sim = sim_server("--replicas", "2")
    proxy = FaultProxy(0, ("127.0.0.1", int(sim.urls[1].rsplit(":", 1)[1])))
    await proxy.start()
    flaky = f"http://127.0.0.1:{proxy.port}"
    config = _config(tmp_path, [sim.urls[0], flaky] if both else [flaky], sim.tokens["admin"], health)
    guard = await GuardProcess(config).start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Cluster(sim, proxy, guard, session)
    finally:
        await guard.stop()
        await proxy.stop()


CHECKED = "checks: true, checkInterval: 0.2, checkTimeout: 0.5, failures: 2, coolDown: 60, slowStart: 120"
PASSIVE = "failures: 2, coolDown: 60, slowStart: 120"


@pytest.mark.parametrize("cluster", [(CHECKED, True)], indirect=True)
async def test_a_refusing_endpoint_leaves_rotation_and_comes_back_slowly(cluster: Cluster) -> None:
    """Both replicas share 40 GETs; the second refuses: 40 GETs all succeed on the first, the second
    serves none; it listens again: a passing check closes its circuit, and of the next 60 GETs it gets
    a small share (slow start), not half."""
    assert await cluster.gets(40) == [404] * 40
    first, second = await cluster.served()
    assert first >= 10 and second >= 10 and first + second == 40
    await cluster.proxy.refuse()
    cluster.proxy.reset()
    assert await cluster.gets(40) == [404] * 40
    assert await cluster.served() == (first + 40, second)
    down = await cluster.wait_state("open")
    assert down["up"] is False and down["opens"] == 1 and down["failures"] >= 2
    await cluster.proxy.restore()
    back = await cluster.wait_state("closed")
    assert back["weight"] < 0.2
    assert await cluster.gets(60) == [404] * 60
    first_after, second_after = await cluster.served()
    assert 1 <= second_after - second <= 10 and first_after - (first + 40) >= 50
    async with cluster.session.get(cluster.guard.admin + "/metrics") as r:
        samples = parse_metrics(await r.text())
    figures = {(name, labels["endpoint"]): value for name, labels, value in samples
               if name.startswith("guard_upstream_endpoint_")}
    assert figures[("guard_upstream_endpoint_up", cluster.flaky)] == 1
    assert figures[("guard_upstream_endpoint_opens_total", cluster.flaky)] == 1
    assert figures[("guard_upstream_endpoint_weight", cluster.flaky)] < 0.5
    assert figures[("guard_upstream_endpoint_weight", cluster.sim.urls[0])] == 1


@pytest.mark.parametrize("cluster", [(CHECKED, True)], indirect=True)
async def test_a_blackholed_endpoint_is_found_by_checks_before_any_request_waits_on_it(
        cluster: Cluster) -> None:
    """A link that swallows everything: checks time out and open the circuit while no request runs;
    then 30 GETs are all answered by the first replica."""
    cluster.proxy.blackhole = True
    await cluster.wait_state("open")
    before = await cluster.served()
    assert await cluster.gets(30) == [404] * 30
    after = await cluster.served()
    assert (after[0] - before[0], after[1] - before[1]) == (30, 0)


@pytest.mark.parametrize("cluster", [(PASSIVE, True)], indirect=True)
async def test_without_checks_refused_connections_open_the_circuit_until_the_cool_down(
        cluster: Cluster) -> None:
    """No checks, a minute's cool-down: two refused connections open the circuit (their requests are
    served by the other replica), and even once it listens again it gets nothing before its probe."""
    await cluster.proxy.refuse()
    cluster.proxy.reset()
    assert await cluster.gets(10) == [404] * 10
    down = await cluster.endpoint()
    assert (down["state"], down["failures"], down["opens"]) == ("open", 2, 1)
    await cluster.proxy.restore()
    before = await cluster.served()
    assert await cluster.gets(20) == [404] * 20
    after = await cluster.served()
    assert (after[0] - before[0], after[1] - before[1]) == (20, 0)
    assert cluster.proxy.accepted == 0 and (await cluster.endpoint())["state"] == "open"


@pytest.mark.parametrize("cluster", [(PASSIVE, False)], indirect=True)
async def test_when_every_circuit_is_open_guard_still_tries(cluster: Cluster) -> None:
    """The only endpoint refuses: 503 Status with Retry-After, and its circuit opens; the moment it
    listens again the next request goes through (no cool-down wait) and closes the circuit."""
    assert await cluster.gets(1) == [404]  # the TokenReview is made and cached while it is up
    await cluster.proxy.refuse()
    cluster.proxy.reset()
    async with cluster.session.get(cluster.guard.url + POD,
                                   headers={"Authorization": f"Bearer {cluster.sim.tokens['alice']}"}) as r:
        body = await r.json()
        assert (r.status, r.headers["Retry-After"], body["reason"]) == (503, "1", "ServiceUnavailable")
    assert await cluster.gets(3) == [503] * 3
    assert (await cluster.endpoint())["state"] == "open"
    await cluster.proxy.restore()
    assert await cluster.gets(1) == [404]
    assert (await cluster.endpoint())["state"] == "closed"


async def test_a_reload_keeps_the_breaker_state_of_unchanged_endpoints(
        sim_server: Callable[..., SimServer], tmp_path: Path) -> None:
    """SIGHUP-style reload (in process): an open circuit stays open for the same URL."""
    sim = sim_server("--replicas", "2")
    proxy = FaultProxy(0, ("127.0.0.1", int(sim.urls[1].rsplit(":", 1)[1])))
    await proxy.start()
    await proxy.refuse()
    config = _config(tmp_path, [sim.urls[0], f"http://127.0.0.1:{proxy.port}"], sim.tokens["admin"], PASSIVE)
    running = await start_guard(config)
    try:
        async with aiohttp.ClientSession() as session:
            state = Cluster(sim, proxy, running, session)
            assert await state.gets(6) == [404] * 6
            assert (await state.endpoint())["state"] == "open"
            assert await running.server.reload()
            assert (await state.endpoint())["state"] == "open"
            assert running.server.serving.runtime.upstream.endpoints[1].health.opens == 1
    finally:
        await running.server.stop()
        await proxy.stop()
