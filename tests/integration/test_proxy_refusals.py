"""A refusal sent before the request body arrived never leaves a client on a silently closed
connection: a small body is drained and the connection kept, anything else is answered with
`Connection: close` (issue 12). httpx reuses a kept-alive connection at once, so a close without
that header shows up as "Server disconnected without sending a response"."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.policies import write_policy
from tests.proxy_fakes import FakeApiServer, RunningGuard, start_guard, write_settings

ALICE = {"Authorization": "Bearer alice-token"}
ROUNDS = 150


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def guard(tmp_path: Path, api: FakeApiServer) -> AsyncIterator[RunningGuard]:
    policies = write_policy(tmp_path / "policies", "team-a", "2/s", 2)
    running = await start_guard(write_settings(tmp_path, [api.url], extra=f"policies: {policies}\n"))
    yield running
    await running.server.stop()


PATCH = b'{"data":{"k":"v"}}' * 50


async def _late(body: bytes) -> AsyncIterator[bytes]:
    """The body a moment after the head, as when it leaves in a second packet."""
    await asyncio.sleep(0.005)
    yield body


@pytest.mark.parametrize("length", ["known", "chunked"])
async def test_httpx_looping_patch_and_get_over_quota_never_meets_a_silent_close(
        guard: RunningGuard, length: str) -> None:
    """150 rounds of PATCH (its body sent after its head) then GET on one httpx connection pool,
    far over a 2/s quota: every request gets an answer (200 or 429), none meets a connection
    closed without one."""
    outcomes: Counter[str] = Counter()
    headers = {"Content-Type": "application/merge-patch+json"}
    if length == "known":
        headers["Content-Length"] = str(len(PATCH))
    sent = {"PATCH": headers, "GET": {}}
    async with httpx.AsyncClient(base_url=guard.url, headers=ALICE, timeout=10) as client:
        for i in range(ROUNDS):
            for method in ("PATCH", "GET"):
                try:
                    answer = await client.request(
                        method, f"/api/v1/namespaces/a/configmaps/c{i}", headers=sent[method],
                        content=_late(PATCH) if method == "PATCH" else None)
                    outcomes[str(answer.status_code)] += 1
                except httpx.TransportError as e:
                    outcomes[type(e).__name__] += 1
    print(dict(outcomes))
    assert set(outcomes) <= {"200", "429"}, outcomes
    assert outcomes["429"] > ROUNDS  # the quota was really exceeded
