"""guard in front of the simulator: the official Python client, the spoofing table, and how few
TokenReviews reach the api-server (read from the simulator's own record)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from tests.conftest import SimServer
from tests.proxy_fakes import spawn_guard


@dataclass
class Stack:
    sim: SimServer
    url: str

    def bearer(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sim.tokens[user]}"}


@pytest.fixture
def stack(sim_server: Callable[..., SimServer], tmp_path: Path) -> Iterator[Stack]:
    sim = sim_server()
    config = tmp_path / "guard.yaml"
    config.write_text(f"listen: 127.0.0.1:0\nclusters:\n  - name: sim\n    server: {sim.url}\n"
                      f"    token: {sim.tokens['admin']}\naccessLog: {{enabled: false}}\n")
    process, url, _ = spawn_guard(config)
    try:
        yield Stack(sim, url)
    finally:
        process.terminate()
        process.wait(timeout=20)


def _api(stack: Stack, user: str) -> k8s.CoreV1Api:
    configuration = k8s.Configuration(host=stack.url, api_key={"authorization": stack.sim.tokens[user]},
                                      api_key_prefix={"authorization": "Bearer"})
    return k8s.CoreV1Api(k8s.ApiClient(configuration))


def test_the_official_python_client_lists_watches_and_creates_through_guard(stack: Stack) -> None:
    """create, list and a watch that sees a later create — as alice, who is what the simulator saw."""
    api = _api(stack, "alice")
    body = {"metadata": {"name": "cm-0"}, "data": {"k": "v"}}
    api.create_namespaced_config_map("team-a", body)
    listed = api.list_namespaced_config_map("team-a")
    assert [c.metadata.name for c in listed.items] == ["cm-0"]
    seen: list[str] = []

    def watch() -> None:
        for ev in k8s_watch.Watch().stream(api.list_namespaced_config_map, "team-a",
                                           resource_version=listed.metadata.resource_version,
                                           timeout_seconds=10):
            seen.append(ev["object"].metadata.name)
            return

    watcher = threading.Thread(target=watch)
    watcher.start()
    for i in range(1, 40):  # create until the watch (started asynchronously) has seen one
        if seen:
            break
        api.create_namespaced_config_map("team-a", {"metadata": {"name": f"cm-{i}"}})
        watcher.join(0.1)
    watcher.join(15)
    assert seen and seen[0].startswith("cm-")
    assert stack.sim.state()["users"]["alice"]["requests"] >= 3


@pytest.mark.parametrize(("headers", "code"), [
    ({"Impersonate-User": "system:admin"}, 403),
    ({"Impersonate-User": "admin", "Impersonate-Group": "system:masters"}, 403),
    ({"Impersonate-User": "system:admin", "Connection": "Impersonate-User"}, 403),
    ({"X-Remote-User": "admin", "X-Remote-Group": "system:masters"}, 403),
])
async def test_spoofing_attempts_never_reach_the_simulator_as_someone_else(
        stack: Stack, headers: dict[str, str], code: int) -> None:
    """mallory's impersonation is refused by guard (the simulator records no request from mallory), and
    X-Remote-* injection is stripped: the simulator sees plain mallory and forbids her."""
    async with aiohttp.ClientSession() as session, session.get(
            stack.url + "/api/v1/namespaces/kube-system/secrets",
            headers={**stack.bearer("mallory"), **headers}) as r:
        body = await r.json()
    assert r.status == code and body["kind"] == "Status"
    users = stack.sim.state()["users"]
    assert "system:admin" not in users and users.get("admin", {}).get("verbs", {}).get("list") is None
    if "X-Remote-User" in headers:
        assert users["mallory"]["requests"] == 1
    else:
        assert "mallory" not in users


async def test_a_thousand_requests_with_one_token_cause_one_token_review(stack: Stack) -> None:
    """1,000 requests by alice → 1 TokenReview; a bad token hammered 1,000 times → at most a handful."""
    async with aiohttp.ClientSession() as session:
        url = stack.url + "/api/v1/namespaces/team-a/configmaps"

        async def hammer(headers: dict[str, str], expect: int) -> None:
            async def one() -> None:
                async with session.get(url, headers=headers) as r:
                    assert r.status == expect
            for _ in range(50):
                await asyncio.gather(*(one() for _ in range(20)))
        await hammer(stack.bearer("alice"), 200)
        await hammer({"Authorization": "Bearer not-a-token"}, 401)
    totals = stack.sim.state()["totals"]
    assert stack.sim.state()["tokenReviews"] == {"alice": 1}
    assert 1 <= totals["tokenReviewsFailed"] <= 3


