"""Shared cluster health with real parts: `guard serve` processes on one redis-server in front of a
two-replica simulator, the second replica behind a TCP fault proxy. The proxy counts every connection
a guard opens to the dead endpoint, and guards send one at a time, so its count per phase is what each
guard cost the dead endpoint: a guard that learns of the death from the fleet costs it nothing, a
guard alone (another fleet: another keyPrefix on the same Redis) pays its own `failures`."""

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
from tests.integration.federation_guards import eventually, guards_running
from tests.proxy_fakes import GuardProcess
from tests.redis_servers import RedisServer, redis_server  # noqa: F401

pytestmark = pytest.mark.redis
POD = "/api/v1/namespaces/team-a/pods/missing"
FAILURES = 3


@dataclass
class Fleet:
    sim: SimServer
    proxy: FaultProxy
    a: GuardProcess
    b: GuardProcess
    alone: GuardProcess
    """Same settings on another keyPrefix: a fleet of its own."""
    session: aiohttp.ClientSession

    @property
    def flaky(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    async def gets(self, guard: GuardProcess, n: int) -> list[int]:
        """n GETs through `guard` as alice, one after another."""
        out = []
        for _ in range(n):
            async with self.session.get(guard.url + POD,
                                        headers={"Authorization": f"Bearer {self.sim.tokens['alice']}"}) as r:
                await r.read()
                out.append(r.status)
        return out

    async def cost(self, guard: GuardProcess, n: int) -> tuple[list[int], int]:
        """(statuses of n GETs through `guard`, connections the dead endpoint saw meanwhile)."""
        before = self.proxy.accepted
        statuses = await self.gets(guard, n)
        return statuses, self.proxy.accepted - before

    async def endpoint(self, guard: GuardProcess) -> dict[str, Any]:
        """The flaky endpoint as `guard`'s /debug/guard/upstreams shows it."""
        async with self.session.get(guard.admin + "/debug/guard/upstreams") as r:
            page = await r.json()
        return next(e for e in page["clusters"][0]["endpoints"] if e["url"] == self.flaky)

    async def becomes(self, guard: GuardProcess, state: str, source: str) -> dict[str, Any]:
        async def seen() -> bool:
            found = await self.endpoint(guard)
            return bool(found["state"] == state and found["source"] == source)
        assert await eventually(seen, timeout=10), await self.endpoint(guard)
        return await self.endpoint(guard)

    async def figures(self, guard: GuardProcess) -> dict[str, float]:
        """The flaky endpoint's guard_upstream_endpoint_* samples on `guard`."""
        async with self.session.get(guard.admin + "/metrics") as r:
            samples = parse_metrics(await r.text())
        return {name: value for name, labels, value in samples
                if name.startswith("guard_upstream_endpoint_") and labels.get("endpoint") == self.flaky}

    async def kill_endpoint(self) -> None:
        """Every new connection to the second replica is accepted (and counted), then reset."""
        self.proxy.drop = 1.0
        self.proxy.reset()
        await asyncio.sleep(0.1)  # let the guards see their pooled connections reset (not measured)

    async def open_on(self, guard: GuardProcess) -> int:
        """GETs through `guard` until its own circuit to the dead endpoint opens; what that cost it."""
        spent = 0
        for _ in range(20):
            statuses, cost = await self.cost(guard, 1)
            assert statuses == [404]  # refused connections are retried on the live replica
            spent += cost
            if (await self.endpoint(guard))["state"] == "open":
                return spent
        raise AssertionError(f"the circuit never opened: {await self.endpoint(guard)}")


def _config(path: Path, sim: SimServer, servers: list[str], redis: str, health: str, prefix: str) -> Path:
    path.write_text(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nclusters:\n  - name: sim\n"
        f"    servers: [{', '.join(servers)}]\n    token: {sim.tokens['admin']}\n"
        f"    health: {{{health}}}\naccessLog: {{enabled: false}}\n"
        f"redis: {{url: '{redis}', heartbeat: 200ms, keyPrefix: '{prefix}'}}\n")
    return path


@pytest.fixture
async def fleet(sim_server: Callable[..., SimServer], tmp_path: Path, redis_server: RedisServer,  # noqa: F811
                request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    """`request.param`: the clusters' `health:` settings. Every guard has sent GETs to both replicas."""
    sim = sim_server("--replicas", "2")
    proxy = FaultProxy(0, ("127.0.0.1", int(sim.urls[1].rsplit(":", 1)[1])))
    await proxy.start()
    servers = [sim.urls[0], f"http://127.0.0.1:{proxy.port}"]
    configs = [_config(tmp_path / f"{name}.yaml", sim, servers, redis_server.url, request.param, prefix)
               for name, prefix in (("a", "guard:"), ("b", "guard:"), ("alone", "alone:"))]
    try:
        async with guards_running(configs) as (a, b, alone), aiohttp.ClientSession() as session:
            fleet = Fleet(sim, proxy, a, b, alone, session)
            for guard in (a, b, alone):
                assert await fleet.gets(guard, 6) == [404] * 6
            assert proxy.accepted >= 3
            yield fleet
    finally:
        await proxy.stop()


PASSIVE = f"failures: {FAILURES}, coolDown: 60, slowStart: 120"
RECOVERING = f"failures: {FAILURES}, coolDown: 1, slowStart: 120"


@pytest.mark.parametrize("fleet", [PASSIVE], indirect=True)
async def test_once_one_replica_finds_an_endpoint_dead_the_other_sends_it_nothing(fleet: Fleet) -> None:
    """The second api-server dies. Guard A pays its `failures` connections before its circuit opens; B,
    told by the fleet within a heartbeat, sends it none of its 30 GETs; a guard alone (another fleet)
    pays its own `failures` again. Every GET is answered by the live replica."""
    await fleet.kill_endpoint()
    a_cost = await fleet.open_on(fleet.a)
    told = await fleet.becomes(fleet.b, "open", "fleet")
    assert told["fleet"]["open"] == 2 and told["fleet"]["replicas"] == 2 and told["failures"] == 0
    b_statuses, b_cost = await fleet.cost(fleet.b, 30)
    alone_statuses, alone_cost = await fleet.cost(fleet.alone, 30)
    print(f"\nconnections to the dead endpoint: A (found it) {a_cost}, B (told by the fleet) {b_cost}, "
          f"a guard alone {alone_cost}")
    assert b_statuses == alone_statuses == [404] * 30
    assert a_cost >= FAILURES and b_cost == 0 and alone_cost >= FAILURES
    figures = await fleet.figures(fleet.b)
    assert figures["guard_upstream_endpoint_fleet_open"] == 2
    assert figures["guard_upstream_endpoint_fleet_replicas"] == 2
    assert figures["guard_upstream_endpoint_fleet_opens_total"] == 1
    assert figures["guard_upstream_endpoint_failures_total"] == 0
    assert figures["guard_upstream_endpoint_up"] == 0


@pytest.mark.parametrize("fleet", [RECOVERING], indirect=True)
async def test_a_recovery_one_replica_probes_closes_the_circuit_everywhere_with_one_slow_start(
        fleet: Fleet) -> None:
    """The endpoint comes back; A's probe (after its one-second cool-down) hears it answer. B, which
    has sent nothing since the fleet opened its circuit, closes it without a probe of its own, ramping
    from A's recovery: of B's next 40 GETs the endpoint takes a small share, not half."""
    await fleet.kill_endpoint()
    await fleet.open_on(fleet.a)
    await fleet.becomes(fleet.b, "open", "fleet")
    await fleet.proxy.restore()

    async def a_recovered() -> bool:
        assert await fleet.gets(fleet.a, 1) == [404]
        return bool((await fleet.endpoint(fleet.a))["state"] == "closed")

    assert await eventually(a_recovered, timeout=15, step=0.2)
    before = fleet.proxy.accepted
    back = await fleet.becomes(fleet.b, "closed", "fleet")
    assert fleet.proxy.accepted == before  # B closed it on the fleet's word, not by a probe
    a_weight = (await fleet.endpoint(fleet.a))["weight"]
    assert back["weight"] < 0.2 and abs(back["weight"] - a_weight) < 0.05
    assert back["fleet"]["closes"] == 1
    sim_before = await _served(fleet)
    assert await fleet.gets(fleet.b, 40) == [404] * 40
    sim_after = await _served(fleet)
    assert 1 <= sim_after[1] - sim_before[1] <= 10


@pytest.mark.parametrize("fleet", [PASSIVE], indirect=True)
async def test_with_redis_killed_each_replica_serves_on_its_own_view(fleet: Fleet,
                                                                    redis_server: RedisServer) -> None:  # noqa: F811
    """Redis dies, then the endpoint: no fleet view is left (the fleet metrics are gone), so A and B each
    pay their own `failures` — as a guard alone does — and every GET is still answered, no 5xx."""
    redis_server.kill()

    async def no_fleet_view() -> bool:
        views = [await fleet.endpoint(g) for g in (fleet.a, fleet.b)]
        return all(v["fleet"] is None or "replicas" not in v["fleet"] for v in views)

    assert await eventually(no_fleet_view, timeout=10)
    await fleet.kill_endpoint()
    a_cost = await fleet.open_on(fleet.a)
    b_statuses, b_cost = await fleet.cost(fleet.b, 30)
    assert b_statuses == [404] * 30
    assert a_cost >= FAILURES and b_cost >= FAILURES
    assert (await fleet.endpoint(fleet.b))["source"] == "local"
    figures = await fleet.figures(fleet.b)
    assert "guard_upstream_endpoint_fleet_open" not in figures
    assert figures["guard_upstream_endpoint_failures_total"] >= FAILURES


async def _served(fleet: Fleet) -> tuple[int, int]:
    """GETs each simulator replica answered so far."""
    async with fleet.session.get(fleet.sim.url + "/metrics") as r:
        samples = parse_metrics(await r.text())
    counts = [0, 0]
    for name, labels, value in samples:
        if name == "sim_requests_total" and labels["verb"] == "GET":
            counts[int(labels["replica"])] += int(value)
    return counts[0], counts[1]
