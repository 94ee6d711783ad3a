"""A brief burst over quota through a real `guard serve` in front of the simulator, with lightkube (an
httpx-based client that, like kr8s and the JavaScript client, raises on a 429 instead of waiting):
with the default `maxWait` every call succeeds — the requests over the burst wait for their tokens —
and with `maxWait: 0` the same burst gets 429s."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Pod

from tests.conftest import SimServer
from tests.integration.federation_guards import guards_running
from tests.policies import write_policy

BURST, CALLS = 5, 15  # 15 calls at once against burst 5 at 20/s: the last token comes 0.5 s later


def _client(url: str, token: str) -> AsyncClient:
    config = KubeConfig.from_dict({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "g", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "g", "user": "u", "namespace": "team-a"}}]})
    return AsyncClient(config, namespace="team-a")


async def _burst(url: str, token: str) -> list[int]:
    """The status of each of CALLS concurrent LISTs of pods (200, or the ApiError's code)."""
    client = _client(url, token)

    async def one() -> int:
        try:
            [_ async for _ in client.list(Pod)]
        except ApiError as e:
            return int(e.status.code or 0)
        return 200
    try:
        return await asyncio.gather(*(one() for _ in range(CALLS)))
    finally:
        await client.close()


@pytest.mark.parametrize(("max_wait", "refused"), [("1s", False), ("0s", True)])
async def test_a_brief_burst_over_quota_never_fails_a_client_that_does_not_retry(
        tmp_path: Path, sim_server: Callable[..., SimServer], max_wait: str, refused: bool) -> None:
    sim = sim_server()
    policies = write_policy(tmp_path / "policies", "team-a", "20/s", BURST, max_wait=max_wait)
    config = tmp_path / "guard.yaml"
    config.write_text(f"listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nclusters:\n  - name: dev\n"
                      f"    server: {sim.url}\n    token: {sim.tokens['admin']}\nforwarding: passthrough\n"
                      f"policies: {policies}\naccessLog: {{enabled: false}}\n")
    async with guards_running([config]) as (guard,):
        statuses = await _burst(guard.url, sim.tokens["alice"])
    print(f"\nmaxWait {max_wait}: {sorted(statuses)}")
    if refused:
        assert statuses.count(429) >= CALLS - BURST - 2  # refusals without the wait (a token may refill)
    else:
        assert statuses == [200] * CALLS
