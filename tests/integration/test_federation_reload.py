"""guard serve keeps its quota store for the life of the process: a SIGHUP reload does not refill
buckets, and a Redis that is down at startup does not stop guard from serving."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp

from chaos.ports import free_port
from tests.conftest import SimServer
from tests.policies import write_policy
from tests.proxy_fakes import GuardProcess


def write_config(tmp_path: Path, sim: SimServer, *, redis: str = "", rate: str = "1/h") -> Path:
    policies = tmp_path / "policies"
    write_policy(policies, "team-a", rate, 3)
    config = tmp_path / "guard.yaml"
    config.write_text(
        f"listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n"
        f"clusters:\n  - name: dev\n    server: {sim.url}\n    token: {sim.tokens['admin']}\n"
        f"forwarding: passthrough\npolicies: {policies}\naccessLog: {{enabled: false}}\n{redis}")
    return config


async def statuses(url: str, token: str, count: int, namespace: str = "team-a", *,
                   pause: float = 0.0) -> list[int]:
    async with aiohttp.ClientSession() as client:
        out = []
        for _ in range(count):
            async with client.get(f"{url}/api/v1/namespaces/{namespace}/configmaps",
                                  headers={"Authorization": f"Bearer {token}"}) as resp:
                out.append(resp.status)
            await asyncio.sleep(pause)
        return out


async def test_sighup_keeps_bucket_state(tmp_path: Path, sim_server: Callable[..., SimServer]) -> None:
    """A drained bucket (burst 3, 1/h) stays drained across a SIGHUP that adds a tenant."""
    sim = sim_server()
    guard = await GuardProcess(write_config(tmp_path, sim)).start()
    try:
        assert await statuses(guard.url, sim.tokens["alice"], 4) == [200, 200, 200, 429]
        write_policy(tmp_path / "policies", "team-b", "1/h", 1)
        guard.signal(1)  # SIGHUP
        await guard.wait_for_log("reloaded settings")
        assert await statuses(guard.url, sim.tokens["bob"], 2, "team-b") == [200, 429]  # the new policy
        assert await statuses(guard.url, sim.tokens["alice"], 2) == [429, 429]
    finally:
        assert await guard.stop() == 0


async def test_redis_down_at_startup_serves_on_the_fail_mode(
        tmp_path: Path, sim_server: Callable[..., SimServer]) -> None:
    """With nothing listening at the Redis URL guard starts, says so once, and admits on the local
    bucket of the rule's failMode (10/s) instead of failing or rejecting everything."""
    sim = sim_server()
    redis = f"redis: redis://127.0.0.1:{free_port()}/0\n"
    guard = await GuardProcess(write_config(tmp_path, sim, redis=redis, rate="10/s")).start()
    try:
        await guard.wait_for_log("redis unreachable")
        seen = await statuses(guard.url, sim.tokens["alice"], 10, pause=0.15)
        assert set(seen) <= {200, 429} and seen.count(200) >= 5
    finally:
        assert await guard.stop() == 0
    assert sum("redis unreachable" in line for line in guard.stderr_lines) == 1
