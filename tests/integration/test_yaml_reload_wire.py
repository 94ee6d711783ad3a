"""A YAML alias bomb dropped into the policy directory (issue 13, item 7): on SIGHUP `guard serve`
refuses the reload naming the file and keeps serving with the policies it had, instead of freezing
every request while it walks the expanded document."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.proxy_fakes import FakeApiServer, GuardProcess, write_settings
from tests.yaml_bombs import POLICY_HEAD, bomb


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer()
    await fake.start()
    yield fake
    await fake.stop()


async def test_a_bomb_in_the_policies_is_refused_on_reload_and_traffic_goes_on(
        tmp_path: Path, api: FakeApiServer) -> None:
    """The reload is rejected with the file and the reason; requests before and after it pass."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "t.yaml").write_text(POLICY_HEAD)
    guard = await GuardProcess(write_settings(tmp_path, [api.url], extra=f"policies: {policies}\n")).start()
    try:
        async with aiohttp.ClientSession() as client:
            url, alice = guard.url + "/api/v1/namespaces/a/pods/p", {"Authorization": "Bearer alice-token"}
            async with client.get(url, headers=alice) as r:
                assert r.status == 200
            (policies / "zz-bomb.yaml").write_text(POLICY_HEAD.replace("name: t}", "name: z}") + "bomb:\n  "
                                                   + bomb().replace("\n", "\n  "))
            guard.signal(signal.SIGHUP)
            line = await guard.wait_for_log("reload rejected")
            assert "zz-bomb.yaml: refused: expands to more than 100000 nodes" in line
            for _ in range(5):
                async with client.get(url, headers=alice) as r:
                    assert r.status == 200
    finally:
        await guard.stop()
