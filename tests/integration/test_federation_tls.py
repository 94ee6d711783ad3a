"""guard on a TLS-only Redis (`rediss://`) with a CA made in the test: leasing over TLS and mutual
TLS, and a wrong CA refused with one clear log line while requests follow their failMode."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from guard.admission.store import Limit
from guard.cli.certs import make_ca, make_client_cert, make_server_cert, write_pair
from guard.federation.config import parse_redis
from guard.federation.leases import build_store
from tests.conftest import SimServer
from tests.integration.federation_guards import (
    all_metric,
    eventually,
    flood,
    guards_running,
    write_config,
)
from tests.policies import write_policy
from tests.redis_servers import RedisSentinelGroup, RedisServer, TlsFiles, require_tls

pytestmark = pytest.mark.redis
RATE, BURST = 100, 20


@dataclass
class TlsRedis:
    server: RedisServer
    certs: Path

    def lease_calls(self) -> int:
        return sum(self.server.commandstats().get(c, 0) for c in ("fcall", "evalsha"))


def make_certs(certs: Path) -> Path:
    """ca, a server certificate for 127.0.0.1 and a client certificate it signs; other-ca signs nothing."""
    certs.mkdir()
    ca = make_ca("redis-test-ca")
    write_pair(certs, "ca", ca)
    write_pair(certs, "other-ca", make_ca("redis-test-ca"))  # same name, another key
    write_pair(certs, "server", make_server_cert(ca))
    write_pair(certs, "client", make_client_cert(ca, "guard"))
    return certs


@pytest.fixture(params=["server-auth", "mutual"])
def tls_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TlsRedis]:
    """A redis-server listening only on a TLS port, its certificate signed by a CA made here (and,
    for `mutual`, requiring a client certificate from that CA); `other-ca.crt` signs nothing."""
    require_tls()
    certs = make_certs(tmp_path / "certs")
    mutual = request.param == "mutual"
    server = RedisServer(tls=TlsFiles(
        str(certs / "server.crt"), str(certs / "server.key"), str(certs / "ca.crt"),
        client_cert=str(certs / "client.crt") if mutual else None,
        client_key=str(certs / "client.key") if mutual else None))
    try:
        yield TlsRedis(server.start(), certs)
    finally:
        server.kill()


def redis_value(tls: TlsRedis, ca: str) -> str:
    files = f"caFile: {tls.certs / ca}"
    if tls.server.tls is not None and tls.server.tls.auth_clients:
        files += f", certFile: {tls.certs / 'client.crt'}, keyFile: {tls.certs / 'client.key'}"
    return f"{{url: '{tls.server.url}', {files}}}"


async def test_guard_leases_over_tls(tmp_path: Path, sim_server: Callable[..., SimServer],
                                     tls_redis: TlsRedis) -> None:
    """150/s through a guard on rediss:// against 100/s: admitted within the quota, every lease
    taken from the TLS Redis, never degraded."""
    sim = sim_server()
    policies = write_policy(tmp_path / "policies", "team-a", f"{RATE}/s", BURST)
    config = write_config(tmp_path / "guard.yaml", sim, policies, redis_value(tls_redis, "ca.crt"))
    async with guards_running([config]) as guards:
        assert await eventually(lambda: all_metric(guards, "guard_federation_live_replicas", 1))
        statuses, span = await flood(guards, sim.tokens["alice"], 150, 2.0)
        assert await all_metric(guards, "guard_federation_degraded", 0)
        assert await all_metric(guards, "guard_federation_lease_failures", 0)
    print(f"\nguard over TLS ({tls_redis.server.url}): {dict(statuses)} in {span:.1f} s, "
          f"{tls_redis.lease_calls()} lease calls")
    assert set(statuses) == {200, 429}
    # Alone this admits 211-214 of a bound of 220; on a CPU-starved machine (the whole suite on 2
    # cores) 232 was seen once: within one lease's worth (rate x leaseTTL 0.25 s), the known limit
    # in docs/federation.md, not yet explained.
    assert 0.9 * RATE * 2 <= statuses[200] <= RATE * (span + 0.25) + BURST + 1
    assert tls_redis.lease_calls() > 0


async def test_wrong_ca_is_refused_and_requests_follow_their_fail_mode(
        tmp_path: Path, sim_server: Callable[..., SimServer], tls_redis: TlsRedis) -> None:
    """A guard trusting another CA never talks to Redis: one warning names the refused handshake
    and the settings to check; a client under its `local` quota is served in full on rate/N, one
    under a `closed` quota is refused, and no 5xx is answered."""
    sim = sim_server()
    policies = write_policy(tmp_path / "policies", "team-a", f"{RATE}/s", BURST)
    write_policy(policies, "team-b", f"{RATE}/s", BURST, fail_mode="closed")
    config = write_config(tmp_path / "guard.yaml", sim, policies, redis_value(tls_redis, "other-ca.crt"))
    async with guards_running([config]) as guards:
        line = await guards[0].wait_for_log("TLS handshake refused")
        local, _ = await flood(guards, sim.tokens["alice"], 50, 1.0)
        closed, _ = await flood(guards, sim.tokens["bob"], 20, 0.5, namespace="team-b")
        assert await all_metric(guards, "guard_federation_degraded", 1)
        refused = [entry for entry in guards[0].stderr_lines if "TLS handshake refused" in entry]
    print(f"\nwrong CA: {line.strip()}\nlocal {dict(local)}, closed {dict(closed)}")
    assert "CERTIFICATE_VERIFY_FAILED" in line and "redis.caFile" in line
    assert "failMode" in line and len(refused) == 1
    assert local == {200: 50}
    assert closed == {429: 10}
    assert tls_redis.lease_calls() == 0


async def test_sentinel_over_tls_follows_a_failover(tmp_path: Path) -> None:
    """rediss:// with sentinel: the sentinel (one, quorum 1) and the data nodes speak only TLS;
    the store leases from the master, and from the promoted replica once the master is killed."""
    require_tls()
    certs = make_certs(tmp_path / "certs")
    group = RedisSentinelGroup(sentinels=1, tls=TlsFiles(str(certs / "server.crt"), str(certs / "server.key"),
                                                          str(certs / "ca.crt")))
    try:
        group.start()
        settings, problems = parse_redis({"url": "rediss://ignored:1/0", "caFile": str(certs / "ca.crt"),
                                          "sentinel": {"master": group.name, "addresses": group.addresses}},
                                         "redis")
        assert problems == []
        store = await build_store(settings, replica_id="r1", cluster="c")
        await store.start()
        try:
            limit = Limit(100, 20)
            assert store.take("team-a:all", limit).allowed
            assert await eventually(lambda: store.stats.granted > 0, 3)
            old = group.master
            old.kill()
            new = await asyncio.to_thread(group.wait_failover, old.port)
            granted = store.stats.granted

            async def leasing_again() -> bool:
                store.take("team-a:all", limit)
                return not store.degraded and store.stats.granted > granted

            assert await eventually(leasing_again, 10)
        finally:
            await store.close()
        assert sum(new.commandstats().get(c, 0) for c in ("fcall", "evalsha")) > 0
    finally:
        group.stop()
