"""guard on a Sentinel-managed Redis: real master, replica and three sentinels; the master is killed
mid-flood, the sentinels promote the replica, and two `guard serve` processes lease from it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from guard.admission.store import Limit
from guard.federation.config import parse_redis
from guard.federation.leases import build_store
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
from tests.redis_servers import RedisSentinelGroup, RedisServer, redis_sentinel  # noqa: F401

pytestmark = pytest.mark.redis
RATE, BURST = 100, 20


def lease_calls(node: RedisServer) -> int:
    return sum(node.commandstats().get(c, 0) for c in ("fcall", "evalsha"))


async def test_leasing_moves_to_the_promoted_replica(tmp_path: Path, sim_server: Callable[..., SimServer],
                                                     redis_sentinel: RedisSentinelGroup) -> None:  # noqa: F811
    """Two guards configured with the sentinels (the URL's host is a decoy: the sentinels name the
    master) share 100/s through the master; the master is killed during a 150/s flood; once the
    sentinels promote the replica both guards lease from it again and still share one quota. No
    request fails with a 5xx at any point."""
    sim = sim_server()
    group = redis_sentinel
    policies = write_policy(tmp_path / "policies", "team-a", f"{RATE}/s", BURST)
    redis = (f"{{url: 'redis://127.0.0.1:1/0', sentinel: {{master: {group.name}, "
             f"addresses: [{', '.join(group.addresses)}]}}}}")
    configs = [write_config(tmp_path / f"guard-{i}.yaml", sim, policies, redis) for i in range(2)]
    async with guards_running(configs) as guards:
        assert await eventually(lambda: all_metric(guards, "guard_federation_live_replicas", 2))
        old = group.master
        before, _ = await flood(guards, sim.tokens["alice"], 150, 2.0)
        assert lease_calls(old) > 0
        assert 0.9 * RATE * 2 <= before[200] <= RATE * 2 + BURST + 3

        statuses: Counter[int] = Counter()
        flooding = asyncio.ensure_future(flood(guards, sim.tokens["alice"], 150, 6.0, statuses=statuses))
        await asyncio.sleep(1.0)
        old.kill()
        killed = time.monotonic()
        assert await eventually(lambda: all_metric(guards, "guard_federation_degraded", 1), 5)
        new = await asyncio.to_thread(group.wait_failover, old.port)
        promoted = time.monotonic()
        granted = [await metric(g, "guard_federation_granted") for g in guards]
        on_new = lease_calls(new)  # a promoted replica ran no FCALL of its own before
        assert await eventually(lambda: all_metric(guards, "guard_federation_degraded", 0), 10)
        assert await eventually(lambda: grew(guards, granted), 5)
        resumed = time.monotonic()
        await flooding
        assert lease_calls(new) > on_new

        after, span = await flood(guards, sim.tokens["alice"], 150, 2.0)
        calls = lease_calls(new) - on_new
    print(f"\nsentinel failover {old.port} -> {new.port}: promoted {promoted - killed:.1f} s after the kill, "
          f"both guards leasing again {resumed - promoted:.1f} s later; before {dict(before)}, "
          f"during {dict(statuses)}, after {dict(after)} in {span:.1f} s; {calls} lease calls on the new one")
    assert not [s for s in (*before, *statuses, *after) if s >= 500]
    assert 0.9 * RATE * 2 <= after[200] <= RATE * span + BURST + 3
    assert statuses[200] <= RATE * 6.5 + 2 * BURST + 8  # within the quota through the failover too


async def grew(guards: list[GuardProcess], before: list[float]) -> bool:
    now = [await metric(g, "guard_federation_granted") for g in guards]
    return all(a > b for a, b in zip(now, before, strict=True))


def sentinel_clients(group: RedisSentinelGroup) -> int:
    """Connections open on all the sentinels together (theirs to each other included)."""
    words = [word for sentinel in group.sentinels for word in sentinel.cli("INFO", "clients")]
    return sum(int(word.split(":")[1]) for word in words if word.startswith("connected_clients:"))


async def test_store_uses_the_url_database_and_closes_its_sentinel_connections(
        redis_sentinel: RedisSentinelGroup) -> None:  # noqa: F811
    """Through the sentinels the store writes to the URL's database (/3, as it would on a single
    node), and closing it leaves no connection open on any sentinel."""
    group = redis_sentinel
    idle = sentinel_clients(group)
    settings, problems = parse_redis({"url": "redis://ignored:6379/3", "sentinel": {
        "master": group.name, "addresses": group.addresses}}, "redis")
    assert problems == []
    store = await build_store(settings, replica_id="r1", cluster="c")
    await store.start()
    try:
        assert store.take("team-a:all", Limit(100, 20)).allowed
        assert await eventually(lambda: store.stats.granted > 0, 3)
        assert sentinel_clients(group) > idle
    finally:
        await store.close()
    assert int(group.master.cli("-n", "3", "DBSIZE")) > 0
    assert int(group.master.cli("-n", "0", "DBSIZE")) == 0
    assert await eventually(lambda: sentinel_clients(group) == idle, 3)
