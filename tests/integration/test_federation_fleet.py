"""Several replicas sharing one Redis quota: accuracy, Redis load per request, outages, recovery."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from guard.admission.store import Limit
from guard.federation.config import parse_redis
from guard.federation.leases import RedisQuotaStore, build_store
from tests.redis_servers import RedisServer, redis_server  # noqa: F401

pytestmark = pytest.mark.redis
WORKER = Path(__file__).with_name("federation_flood_worker.py")


def test_three_processes_share_one_quota(redis_server: RedisServer) -> None:  # noqa: F811
    """Three processes flooding one 100/s quota for 10 s admit between 95 % and 100 % + burst."""
    seconds, rate, burst = 10.0, 100.0, 20.0
    start_at = time.time() + 1.5
    workers = [subprocess.Popen(
        [sys.executable, str(WORKER), redis_server.url, f"r{i}", str(start_at), str(seconds),
         str(rate), str(burst), "150"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for i in range(3)]
    try:
        results = [json.loads(w.communicate(timeout=60)[0]) for w in workers]
    finally:
        for w in workers:
            w.kill()
    admitted = sum(r["admitted"] for r in results)
    print(f"\nfleet of 3 admitted {admitted} of {sum(r['offered'] for r in results)} offered "
          f"(quota {rate * seconds:.0f} + burst {burst:.0f}); per replica {[r['admitted'] for r in results]}")
    assert all(r["live"] == 3 for r in results)
    assert 0.95 * rate * seconds <= admitted <= rate * seconds + burst + 3  # 3: starter allowances


async def replicas(url: str, count: int, **overrides: object) -> list[RedisQuotaStore]:
    settings, problems = parse_redis({"url": url, **overrides}, "redis")
    assert problems == []
    stores = [await build_store(settings, replica_id=f"r{i}", cluster="c") for i in range(count)]
    for store in stores:
        await store.start()
    for store in stores:
        await store.membership.beat()
    return stores


async def drive(stores: list[RedisQuotaStore], key: str, limit: Limit, seconds: float,
                per_step: int, budget: float = 0.0) -> tuple[int, int]:
    """Take `per_step` per store every 5 ms; (admitted, takes slower than `budget` if given)."""
    admitted = slow = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for store in stores:
            for _ in range(per_step):
                started = time.perf_counter()
                admitted += store.take(key, limit).allowed
                slow += budget > 0 and time.perf_counter() - started > budget
        await asyncio.sleep(0.005)
    return admitted, slow


def top_level_calls(stats: dict[str, int]) -> int:
    """Round trips clients made: guard's function calls plus plain commands outside scripts."""
    return sum(stats.get(name, 0) for name in ("fcall", "evalsha", "ping", "zrem", "hmget", "publish"))


async def test_redis_calls_per_admitted_request_at_steady_state(redis_server: RedisServer) -> None:  # noqa: F811
    """Steady traffic under the quota costs fewer than 0.05 Redis calls per admitted request."""
    stores = await replicas(redis_server.url, 3)
    limit = Limit(rate=3000, burst=600)
    try:
        await drive(stores, "ratio:reads", limit, 1.0, 4)  # warm up: demand estimates settle
        before = top_level_calls(redis_server.commandstats())
        admitted, _ = await drive(stores, "ratio:reads", limit, 2.0, 4)
        calls = top_level_calls(redis_server.commandstats()) - before
    finally:
        for store in stores:
            await store.close()
    print(f"\n{calls} redis calls for {admitted} admitted requests: {calls / admitted:.4f} per request")
    assert admitted > 1000
    assert calls / admitted < 0.05


@pytest.mark.parametrize("outage", ["kill", "pause"])
async def test_redis_outage_then_recovery(redis_server: RedisServer, outage: str) -> None:  # noqa: F811
    """Redis killed or paused mid-flood: no take waits, admission stays within the quota (local
    share rate/N, N frozen at 3), open and closed keys follow their mode; leasing resumes after."""
    stores = await replicas(redis_server.url, 3)
    local, opened, closed = Limit(100, 20), Limit(100, 20, "open"), Limit(100, 20, "closed")
    budget = stores[0]._gateway.settings.timeout
    try:
        await drive(stores, "o:local", local, 1.0, 2)
        await drive(stores, "o:open", opened, 0.2, 1)
        await drive(stores, "o:closed", closed, 0.2, 1)
        redis_server.kill() if outage == "kill" else redis_server.pause()
        _, slow_early = await drive(stores, "o:local", local, 0.5, 2, budget)
        assert all(s.degraded for s in stores) and all(s.live == 3 for s in stores)
        admitted, slow = await drive(stores, "o:local", local, 2.0, 2, budget)
        open_admitted, _ = await drive(stores, "o:open", opened, 0.2, 1)
        closed_admitted, _ = await drive(stores, "o:closed", closed, 0.2, 1)
        print(f"\noutage ({outage}): admitted {admitted} in 2 s at 100/s; slow takes {slow_early + slow}")
        assert slow_early + slow == 0
        assert 0.5 * 100 * 2 <= admitted <= 100 * 2 + 20
        assert closed_admitted == 0 and open_admitted >= 3 * 10
        if outage == "kill":
            redis_server.start()
        else:
            redis_server.resume()
        granted = sum(s.stats.granted for s in stores)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and any(s.degraded for s in stores):
            await drive(stores, "o:local", local, 0.2, 2)
        await drive(stores, "o:local", local, 0.5, 2)
        assert not any(s.degraded for s in stores)
        assert sum(s.stats.granted for s in stores) > granted
    finally:
        redis_server.resume()
        for store in stores:
            await store.close()
