"""A replica that starts while Redis is down does not believe it is alone: it assumes N =
max(`redis.expectedReplicas`, the N remembered in `redis.stateDir`), so `failMode: local` admits
its share rate/N instead of the whole rate."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from guard.admission.store import Limit
from guard.federation.config import parse_redis
from guard.federation.leases import RedisQuotaStore, build_store
from tests.conftest import SimServer
from tests.integration.federation_guards import flood, guards_running, metric, write_config
from tests.policies import write_policy
from tests.redis_servers import RedisServer, free_port, redis_server  # noqa: F401

pytestmark = pytest.mark.redis
RATE, BURST = 30, 6


@pytest.mark.parametrize(("setting", "n"), [("", 1), (", expectedReplicas: 3", 3)])
async def test_replica_started_with_redis_down_admits_its_share(
        tmp_path: Path, sim_server: Callable[..., SimServer], setting: str, n: int) -> None:
    """Redis unreachable from the start, 40/s offered for 2 s against 30/s burst 6: with the
    default a replica takes the whole quota (N = 1); with expectedReplicas 3 it takes a third,
    logs N frozen at 3 and shows 3 live replicas."""
    sim = sim_server()
    policies = write_policy(tmp_path / "policies", "team-a", f"{RATE}/s", BURST)
    redis = f"{{url: 'redis://127.0.0.1:{free_port()}/0'{setting}}}"  # nothing listens there
    config = write_config(tmp_path / "guard.yaml", sim, policies, redis)
    async with guards_running([config]) as guards:
        line = await guards[0].wait_for_log("buckets follow their failMode")
        statuses, span = await flood(guards, sim.tokens["alice"], 40, 2.0)
        live = await metric(guards[0], "guard_federation_live_replicas")
    print(f"\nredis down at startup, N = {n}: {dict(statuses)} in {span:.1f} s")
    assert f"N frozen at {n}" in line and live == n
    assert set(statuses) <= {200, 429}
    assert 0.8 * RATE / n * 2 <= statuses[200] <= RATE / n * span + BURST / n + 1


async def started(url: str, state_dir: Path, replica: str) -> RedisQuotaStore:
    settings, problems = parse_redis({"url": url, "stateDir": str(state_dir)}, "redis")
    assert problems == []
    store = await build_store(settings, replica_id=replica, cluster="c")
    await store.start()
    return store


async def test_restart_while_redis_is_down_remembers_the_fleet(tmp_path: Path,
                                                               redis_server: RedisServer) -> None:  # noqa: F811
    """Three replicas heartbeat and remember N = 3 in their state directory; Redis dies; a replica
    restarted on that directory assumes N = 3 and admits a third of the quota on `local`."""
    state = tmp_path / "state"
    fleet = [await started(redis_server.url, state, f"r{i}") for i in range(3)]
    for store in fleet:
        await store.membership.beat()
    assert json.loads((state / "fleet.json").read_text()) == {"replicas": 3}
    for store in fleet:
        await store.close()
    redis_server.kill()

    restarted = await started(redis_server.url, state, "r0-again")
    try:
        assert restarted.degraded and restarted.live == 3
        admitted = 0
        began = time.monotonic()
        while time.monotonic() - began < 1.0:
            admitted += restarted.take("team-a:all", Limit(RATE, BURST)).allowed
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - began
    finally:
        await restarted.close()
    print(f"\nrestarted with redis down, remembered N = 3: admitted {admitted} in {elapsed:.1f} s")
    assert 0.8 * RATE / 3 <= admitted <= RATE / 3 * elapsed + BURST / 3 + 1
