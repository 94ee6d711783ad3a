"""Shared cluster health on a real redis-server (and a real Redis Cluster), in process: replicas'
views of their endpoints meet in Redis, an endpoint one replica saw die is opened on the others, a
recovery closes it everywhere with one slow start, and with Redis gone each replica is back on its
own view. Ticks are driven by hand; nothing asserts a duration."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from guard.federation.breaker import Breaker
from guard.federation.config import parse_redis
from guard.federation.connection import Gateway
from guard.federation.health import FleetHealth
from guard.routing.breaker import EndpointHealth
from guard.routing.config import HealthSettings
from tests.integration.federation_guards import eventually
from tests.redis_servers import RedisClusterServers, RedisServer, redis_cluster, redis_server  # noqa: F401

pytestmark = pytest.mark.redis
SETTINGS = HealthSettings(failures=3, cool_down=60.0, slow_start=120.0)
URLS = ("https://api-0:6443", "https://api-1:6443")


@dataclass(eq=False)
class Ep:
    url: str
    in_flight: int = 0
    health: EndpointHealth = field(default_factory=lambda: EndpointHealth(SETTINGS))


@dataclass
class Replica:
    health: FleetHealth
    gateway: Gateway
    breaker: Breaker
    clusters: dict[str, list[Ep]]

    def ep(self, url: str, cluster: str = "dev") -> Ep:
        return next(e for e in self.clusters[cluster] if e.url == url)


def kill(ep: Ep) -> None:
    """This replica sees the endpoint fail `failures` times in a row, after answering once."""
    now = time.monotonic()
    ep.health.succeeded(now - 1)
    for _ in range(SETTINGS.failures):
        ep.health.failed(now, "ConnectFailed")


@asynccontextmanager
async def fleet(url: str, count: int, *, cluster: bool = False, clusters: tuple[str, ...] = ("dev",),
                interval: float = 1.0) -> AsyncIterator[list[Replica]]:
    settings, problems = parse_redis({"url": url, "cluster": cluster}, "redis")
    assert problems == []
    replicas = []
    for i in range(count):
        gateway = Gateway(settings)
        breaker = Breaker(time.monotonic, jitter=random.random)
        eps = {name: [Ep(u) for u in URLS] for name in clusters}
        health = FleetHealth(gateway, replica=f"r{i}", interval=interval, breaker=breaker)
        health.watch(lambda eps=eps: eps.items())
        replicas.append(Replica(health, gateway, breaker, eps))
    try:
        yield replicas
    finally:
        for r in replicas:
            await r.health.close()
            await r.gateway.close()


async def test_one_replica_sees_an_endpoint_die_and_the_other_opens_it_without_a_failure(
        redis_server: RedisServer) -> None:  # noqa: F811
    """r0's circuit to api-1 opens on its own failures; after one exchange each, r1's opens too — with no
    failure of its own — and api-0 stays closed on both; r0 then hears api-1 answer a probe: r1's closes
    again, its slow start counted from r0's recovery, so both give api-1 the same share."""
    async with fleet(redis_server.url, 2) as (r0, r1):
        kill(r0.ep(URLS[1]))
        assert await r0.health.tick() and await r1.health.tick()
        dead = r1.ep(URLS[1]).health
        assert (dead.state, dead.source, dead.failures, dead.fleet_opens) == ("open", "fleet", 0, 1)
        assert dead.fleet is not None and (dead.fleet.replicas, dead.fleet.open) == (2, 2)
        assert r1.ep(URLS[0]).health.state == "closed" and r0.ep(URLS[0]).health.state == "closed"
        probed = r0.ep(URLS[1]).health
        probed.start_probe(time.monotonic())
        probed.succeeded(time.monotonic())
        assert await r0.health.tick() and await r1.health.tick()
        assert (dead.state, dead.source, dead.fleet_closes) == ("closed", "fleet", 1)
        assert dead.warm_since is not None and probed.warm_since is not None
        assert abs(dead.warm_since - probed.warm_since) < 0.25  # Redis's ms stamps, not a duration
        now = time.monotonic()
        assert dead.weight(now) == pytest.approx(probed.weight(now), abs=0.01)


async def test_in_flight_elsewhere_and_a_stopped_replica_leaving_the_count(
        redis_server: RedisServer) -> None:  # noqa: F811
    """Three replicas: the other two's requests in flight on api-0 add up on r0; r2 stops (its views are
    taken out at once) and r1 stops publishing (its views expire after three intervals)."""
    async with fleet(redis_server.url, 3, interval=0.1) as (r0, r1, r2):
        r1.ep(URLS[0]).in_flight, r2.ep(URLS[0]).in_flight = 4, 3
        for r in (r1, r2, r0):
            assert await r.health.tick()
        health = r0.ep(URLS[0]).health
        assert health.elsewhere == 7 and health.fleet is not None and health.fleet.replicas == 3
        await r2.health.close()
        assert await r0.health.tick() and health.fleet.replicas == 2 and health.elsewhere == 4

        async def r1_expired() -> bool:
            await r0.health.tick()
            return health.fleet is not None and health.fleet.replicas == 1

        assert await eventually(r1_expired, timeout=5)
        assert health.elsewhere == 0


async def test_a_single_replica_of_three_does_not_open_it_for_the_others(
        redis_server: RedisServer) -> None:  # noqa: F811
    """r0 alone sees api-1 die: not a quorum of three; r1 sees it too: r2 opens it on their word."""
    async with fleet(redis_server.url, 3) as (r0, r1, r2):
        for r in (r0, r1, r2):
            assert await r.health.tick()
        kill(r0.ep(URLS[1]))
        for r in (r0, r1, r2):
            assert await r.health.tick()
        assert r2.ep(URLS[1]).health.state == "closed" and r1.ep(URLS[1]).health.state == "closed"
        kill(r1.ep(URLS[1]))
        assert await r1.health.tick() and await r2.health.tick()
        assert (r2.ep(URLS[1]).health.state, r2.ep(URLS[1]).health.source) == ("open", "fleet")


async def test_with_redis_gone_each_replica_is_back_on_its_own_view(redis_server: RedisServer) -> None:  # noqa: F811
    """Redis killed: exchanges fail, the fleet's views and loads are dropped at once, the shared breaker
    opens after three failures and no call is made while it is open; an adopted open circuit stays
    until its probe. Redis back: the exchange resumes by itself."""
    async with fleet(redis_server.url, 2) as (r0, r1):
        r0.ep(URLS[0]).in_flight = 5
        kill(r0.ep(URLS[1]))
        assert await r0.health.tick() and await r1.health.tick()
        assert r1.ep(URLS[0]).health.elsewhere == 5 and r1.ep(URLS[1]).health.state == "open"
        redis_server.kill()
        for _ in range(3):
            assert not await r1.health.tick()
        assert r1.breaker.state == "open"
        calls = r1.health.stats.calls
        assert not await r1.health.tick() and r1.health.stats.calls == calls  # no call while open
        assert (r1.ep(URLS[0]).health.elsewhere, r1.ep(URLS[0]).health.fleet) == (0, None)
        assert r1.ep(URLS[1]).health.state == "open"
        redis_server.start()
        assert await eventually(r1.health.tick, timeout=10)
        assert r1.breaker.state == "closed"


async def test_views_are_hash_tagged_per_cluster_on_a_redis_cluster(
        redis_cluster: RedisClusterServers) -> None:  # noqa: F811
    """Two clusters' views live in two hash tags (slots), each exchanged in its own call, and fold
    independently: api-1 dead in `eu` is not dead in `us`."""
    async with fleet(redis_cluster.url, 2, cluster=True, clusters=("eu", "us")) as (r0, r1):
        kill(r0.ep(URLS[1], "eu"))
        assert await r0.health.tick() and await r1.health.tick()
        assert r1.ep(URLS[1], "eu").health.state == "open"
        assert r1.ep(URLS[1], "us").health.state == "closed"
        key = r0.gateway.key("health:eu", "views")
        assert key == "guard:{health:eu}:views"
        node = redis_cluster.nodes[0]
        slots = {node.cli("CLUSTER", "KEYSLOT", r0.gateway.key(f"health:{c}", "views")).strip()
                 for c in ("eu", "us")}
        assert len(slots) == 2


async def test_exchanges_send_the_script_once_and_again_only_when_redis_lost_it(
        redis_server: RedisServer) -> None:  # noqa: F811
    """Health exchanges call the script by its SHA: the whole script crosses to Redis once per
    server (EVAL, which caches it), every later exchange is an EVALSHA, and after Redis forgot its
    scripts (a restart; SCRIPT FLUSH here) the next exchange sends it once more and succeeds."""
    async with fleet(redis_server.url, 1) as (r0,):
        for _ in range(3):
            assert await r0.health.tick()
        stats = await r0.gateway.call("INFO", "commandstats")
        assert stats["cmdstat_eval"]["calls"] == 1  # the first exchange: NOSCRIPT, then EVAL
        assert stats["cmdstat_evalsha"]["calls"] >= 2  # the two after it (and the first's NOSCRIPT)
        assert r0.health.stats.loads == 1 and r0.health.stats.calls == 3
        await r0.gateway.call("SCRIPT", "FLUSH")
        assert await r0.health.tick()
        assert r0.health.stats.loads == 2 and r0.health.stats.failures == 0
