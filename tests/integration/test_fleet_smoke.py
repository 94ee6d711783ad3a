"""The fleet simulation keeps working: `python -m chaos fleet`'s steady run, scaled down to 4 clusters
x 2 replicas in 4 guard processes on one real redis-server, admits the steady load, costs Redis a bounded
number of calls per admitted request, and keeps answering while Redis answers 50 ms late. Counts only:
`make fleet` prints the figures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chaos.fleet import simulate
from chaos.fleet_bed import Shape
from chaos.fleet_report import render

pytestmark = pytest.mark.redis
SHAPE = Shape(clusters=4, groups=2, replicas=2, tenants=2, rate=60.0)


@pytest.fixture(autouse=True)
def _needs_redis() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make system-deps)")


async def test_a_small_fleet_admits_under_quota_and_costs_redis_few_calls(tmp_path: Path) -> None:
    """Every steady request is answered 200 (the quotas are three times the load), some of them
    through leases (lease calls > 0), and Redis sees fewer than 2 calls per admitted request (the
    idle fleet's heartbeats and health exchanges included; `make fleet` measures 0.9 at 900 req/s).
    With Redis 50 ms late (past guard's 50 ms timeout: every call fails) no request fails either: the
    keys fall back to their local share of the quota (a key that was leasing starts that bucket
    empty, so a few requests are refused as it hands over)."""
    results = await simulate(SHAPE, tmp_path, phase=3.0, cluster=False, events=False)
    idle, steady = results.phases
    assert idle.steady.admitted == 0 and idle.redis.round_trips > 0  # heartbeats, health exchanges
    assert steady.steady.admitted >= 100
    assert steady.steady.statuses.keys() == {200}
    assert steady.lease_calls > 0
    assert steady.redis.round_trips / steady.admitted < 2.0
    [(up, slow)] = results.faults
    assert up.steady.statuses.keys() == {200}
    print(render(results))
    assert slow.steady.admitted >= 100
    assert slow.steady.failed == 0  # only 200s, and 429s while keys hand over to their local share
    assert slow.steady.statuses[429] <= slow.steady.admitted / 4
    assert "Projection (first row" in render(results)
