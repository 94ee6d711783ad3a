"""A replica fronting many clusters and tenants: one health exchange per cluster per heartbeat,
and on a Redis Cluster one lease call per slot per tick, must not take more Redis connections than
the pool has. On a Redis Cluster a full pool fails the call (MaxConnectionsError) instead of
waiting, and a failed call trips the breaker the lease store and health share, so the replica's
quotas fell back to their failMode under the quota (found by `python -m chaos fleet`: 34 clusters
and 20 tenants per guard process, 252 of 13,000 requests under quota refused)."""

from __future__ import annotations

import random
import time

import pytest

from guard.admission.store import Limit
from guard.federation.breaker import Breaker
from guard.federation.config import parse_redis
from guard.federation.connection import Gateway
from guard.federation.health import FleetHealth
from guard.federation.leases import build_store
from tests.integration.test_federation_health import URLS, Ep
from tests.redis_servers import RedisClusterServers, RedisServer, redis_cluster, redis_server  # noqa: F401

pytestmark = pytest.mark.redis
CLUSTERS = 40


async def exchange_many(url: str, *, cluster: bool, pool: int) -> tuple[FleetHealth, Breaker]:
    settings, problems = parse_redis({"url": url, "cluster": cluster, "poolSize": pool}, "redis")
    assert problems == []
    gateway = Gateway(settings)
    breaker = Breaker(time.monotonic, jitter=random.random)
    eps = {f"c{i:03d}": [Ep(u) for u in URLS] for i in range(CLUSTERS)}
    health = FleetHealth(gateway, replica="r0", interval=1.0, breaker=breaker)
    health.watch(lambda: eps.items())
    try:
        for _ in range(3):
            assert await health.tick()
    finally:
        await health.close()
        await gateway.close()
    return health, breaker


async def test_forty_clusters_over_a_pool_of_four_on_a_redis_cluster(
        redis_cluster: RedisClusterServers) -> None:  # noqa: F811
    """Three heartbeats of 40 clusters' exchanges through 4 connections per node: every exchange is
    made (120), none fails, and the breaker the lease store shares stays closed."""
    health, breaker = await exchange_many(redis_cluster.url, cluster=True, pool=4)
    assert health.stats.calls == 3 * CLUSTERS
    assert health.stats.failures == 0
    assert breaker.state == "closed"



async def test_forty_tenants_leasing_in_one_tick_over_a_pool_of_four_on_a_redis_cluster(
        redis_cluster: RedisClusterServers) -> None:  # noqa: F811
    """40 tenants' keys (40 slots: one lease call each) want tokens in the same tick, through 4
    connections per node: every key is leased, no call fails, and the store is not degraded."""
    settings, problems = parse_redis({"url": redis_cluster.url, "cluster": True, "poolSize": 4}, "redis")
    assert problems == []
    store = await build_store(settings, replica_id="r0", cluster="c")
    limit = Limit(rate=100, burst=100)
    try:
        for _ in range(3):
            for tenant in range(CLUSTERS):
                store.take(f"tenant-{tenant}:all:", limit)
            await store.refill_once()
        assert store.stats.lease_calls >= CLUSTERS  # every key leased at least once
        assert store.stats.leased_keys == store.stats.lease_calls  # one key per slot, one slot per call
        assert store.stats.lease_failures == 0
        assert not store.degraded
    finally:
        await store.close()


async def test_on_one_server_one_lease_call_carries_every_key(redis_server: RedisServer) -> None:  # noqa: F811
    """The same 40 keys on one redis-server: one tick is one lease call carrying all 40 (counted as
    `leased_keys`, which `python -m chaos fleet` prices Redis's CPU by)."""
    settings, problems = parse_redis({"url": redis_server.url}, "redis")
    assert problems == []
    store = await build_store(settings, replica_id="r0", cluster="c")
    try:
        for tenant in range(CLUSTERS):
            store.take(f"tenant-{tenant}:all:", Limit(rate=100, burst=100))
        await store.refill_once()
        assert (store.stats.lease_calls, store.stats.leased_keys) == (1, CLUSTERS)
    finally:
        await store.close()
