"""Failure domains stay apart: two `guard serve` replicas reach Redis through the fault proxy, a third
reaches the same redis-server directly, all three in front of the simulator. While the proxied link is
slow (500 ms added to every chunk, ten times guard's timeout) and then drops every connection, the
proxied replicas' breakers open and their keys fall back to a local share of the quota: every request
under the quota is still answered (200, or 429 while a key hands over to its local bucket; no 5xx, no
request left unanswered), and the direct replica is untouched — it stays on Redis and answers every
request 200. Counts only; `make fleet` prints the latencies."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from chaos.faults import FaultProxy
from tests.conftest import SimServer
from tests.integration.federation_guards import (
    all_metric,
    eventually,
    flood,
    guards_running,
    metric,
    write_config,
)
from tests.policies import write_policy
from tests.proxy_fakes import GuardProcess
from tests.redis_servers import RedisServer, redis_server  # noqa: F401

pytestmark = pytest.mark.redis
RATE_EACH, SECONDS = 8, 4.0  # per guard; team-a's quota is 100/s, a third of it per replica when local


@asynccontextmanager
async def three_guards(tmp_path: Path, sim: SimServer, redis: RedisServer,
                       proxy: FaultProxy) -> AsyncIterator[list[GuardProcess]]:
    """[proxied, proxied, direct]. The direct replica waits up to 250 ms for Redis: it must not trip
    on a busy machine's hiccup. The proxied ones keep guard's 50 ms: the longer the timeout, the
    longer a key waits between its lapsed lease and its breaker opening, refusing under quota."""
    policies = write_policy(tmp_path / "policies", "team-a", "100/s", 100)
    redis_settings = [f"{{url: 'redis://127.0.0.1:{proxy.port}/0', expectedReplicas: 3}}"] * 2 + [
        f"{{url: '{redis.url}', expectedReplicas: 3, timeout: 250ms}}"]
    configs = [write_config(tmp_path / f"guard-{i}.yaml", sim, policies, settings)
               for i, settings in enumerate(redis_settings)]
    async with guards_running(configs) as guards:
        assert await eventually(lambda: all_metric(guards, "guard_federation_live_replicas", 3))
        yield guards


async def each_flooded(guards: list[GuardProcess], token: str) -> list[Counter[int]]:
    """RATE_EACH GETs/s through every guard at once for SECONDS: each guard's statuses."""
    floods = await asyncio.gather(*(flood([g], token, RATE_EACH, SECONDS) for g in guards))
    return [statuses for statuses, _ in floods]


async def test_a_slow_or_dropping_redis_link_fails_no_request_and_spares_the_other_replica(
        tmp_path: Path, sim_server: Callable[..., SimServer], redis_server: RedisServer) -> None:  # noqa: F811
    sim = sim_server()
    proxy = FaultProxy(target=("127.0.0.1", redis_server.port))
    await proxy.start()
    try:
        async with three_guards(tmp_path, sim, redis_server, proxy) as guards:
            proxied, direct = guards[:2], guards[2]
            for fault in ("latency", "drop"):
                if fault == "latency":
                    proxy.latency = 0.5
                else:  # Redis back first, so that the drop meets closed breakers again
                    await proxy.restore()
                    assert await eventually(lambda: all_metric(guards, "guard_federation_degraded", 0))
                    proxy.drop = 1.0
                    proxy.reset()
                leased = await metric(direct, "guard_federation_lease_calls")
                statuses = await each_flooded(guards, sim.tokens["alice"])
                sent = int(RATE_EACH * SECONDS)
                print(f"\n{fault}: statuses (proxied, proxied, direct) {statuses}")
                for counts in statuses[:2]:
                    assert sum(counts.values()) == sent
                    assert set(counts) <= {200, 429}, (fault, counts)
                    assert counts[200] >= 0.8 * sent, (fault, counts)
                assert statuses[2] == Counter({200: sent}), fault
                assert all([await metric(g, "guard_federation_degraded") == 1 for g in proxied]), fault
                assert await metric(direct, "guard_federation_degraded") == 0, fault
                assert await metric(direct, "guard_federation_lease_failures") == 0, fault
                assert await metric(direct, "guard_federation_lease_calls") > leased, fault
    finally:
        await proxy.stop()
