"""Edge authorization against the simulator's real RBAC: a user hammering a forbidden LIST never
reaches the api-server and costs a handful of SubjectAccessReviews; allowed users pass with one
review for a thousand requests; a newly granted RoleBinding applies after the deny TTL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import SimServer
from tests.proxy_fakes import RunningGuard, start_guard

FORBIDDEN_LIST = ('pods is forbidden: User "mallory" cannot list resource "pods" in API group "" '
                  'in the namespace "default"')


@dataclass
class Stack:
    sim: SimServer
    guard: RunningGuard
    session: aiohttp.ClientSession

    async def call(self, user: str, path: str, *, method: str = "GET",
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        auth = {"Authorization": f"Bearer {self.sim.tokens[user]}", **(headers or {})}
        async with self.session.request(method, self.guard.url + path, headers=auth) as response:
            return response.status, await response.json(content_type=None)

    async def hammer(self, user: str, path: str, count: int, *, workers: int = 20) -> list[tuple[int, Any]]:
        results: list[tuple[int, Any]] = []

        async def worker(n: int) -> None:
            for _ in range(n):
                results.append(await self.call(user, path))

        await asyncio.gather(*(worker(count // workers) for _ in range(workers)))
        return results

    def sars(self, user: str) -> int:
        return int(self.sim.state()["subjectAccessReviews"].get(user, 0))

    def requests(self, user: str) -> int:
        return int(self.sim.state()["users"].get(user, {}).get("requests", 0))


@pytest.fixture
async def stack(sim_server: Callable[..., SimServer], tmp_path: Path) -> AsyncIterator[Stack]:
    sim = await asyncio.to_thread(sim_server)
    config = tmp_path / "guard.yaml"
    config.write_text(
        f"listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nclusters:\n  - name: sim\n    server: {sim.url}\n"
        f"    token: {sim.tokens['admin']}\n"
        "    authorize: {mode: subjectAccessReview, allowTTL: 300s, denyTTL: 0.5}\n"
        "accessLog: {enabled: false}\n")
    guard = await start_guard(config)
    try:
        async with aiohttp.ClientSession() as session:
            yield Stack(sim, guard, session)
    finally:
        await guard.server.stop()


async def test_a_forbidden_list_hammered_1000_times_never_reaches_the_api_server(stack: Stack) -> None:
    """Every answer is the api-server's 403; the simulator sees no LIST from mallory, few reviews."""
    results = await stack.hammer("mallory", "/api/v1/namespaces/default/pods", 1000)
    assert len(results) == 1000
    assert {status for status, _ in results} == {403}
    assert {body["message"] for _, body in results} == {FORBIDDEN_LIST}
    assert all(body["kind"] == "Status" and body["reason"] == "Forbidden" for _, body in results)
    assert stack.requests("mallory") == 0
    # denyTTL is 0.5 s: at most one review per half second of hammering, far below 1,000
    assert 1 <= stack.sars("mallory") <= 20
    status, direct = stack.sim.request("GET", "/api/v1/namespaces/default/pods", user="mallory")
    assert status == 403 and direct["message"] == FORBIDDEN_LIST  # what the api-server itself says


async def test_allowed_requests_pass_with_one_review_for_a_thousand(stack: Stack) -> None:
    """alice's LISTs in her namespace all reach the api-server; the answer is cached (allowTTL)."""
    results = await stack.hammer("alice", "/api/v1/namespaces/team-a/pods", 1000)
    assert [status for status, _ in results] == [200] * 1000
    assert stack.requests("alice") == 1000
    assert stack.sars("alice") == 1


async def test_an_impersonated_identity_is_authorized_as_itself(stack: Stack) -> None:
    """admin acting as mallory is denied at the edge with mallory's name in the message."""
    status, body = await stack.call("admin", "/api/v1/namespaces/default/pods",
                                    headers={"Impersonate-User": "mallory"})
    assert status == 403 and body["message"] == FORBIDDEN_LIST
    assert stack.sim.state()["impersonators"].get("admin", 0) == 0


async def test_a_granted_rolebinding_applies_after_the_deny_ttl(stack: Stack) -> None:
    """Denied, then bound to an edit role: within a few deny TTLs the same LIST succeeds."""
    path = "/api/v1/namespaces/team-b/pods"
    assert (await stack.call("mallory", path))[0] == 403
    rbac = "rbac.authorization.k8s.io"
    binding = {"apiVersion": f"{rbac}/v1", "kind": "RoleBinding",
               "metadata": {"name": "mallory-edit", "namespace": "team-b"},
               "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "tenant-edit"},
               "subjects": [{"apiGroup": rbac, "kind": "User", "name": "mallory"}]}
    status, _ = stack.sim.request("POST", f"/apis/{rbac}/v1/namespaces/team-b/rolebindings", body=binding)
    assert status == 201
    statuses = []
    for _ in range(100):
        statuses.append((await stack.call("mallory", path))[0])
        if statuses[-1] == 200:
            break
        await asyncio.sleep(0.05)
    assert statuses[-1] == 200 and set(statuses[:-1]) <= {403}
    assert stack.requests("mallory") == 1  # only the allowed LIST reached the api-server


async def test_authorization_counters_are_exported(stack: Stack) -> None:
    """guard_authz_* counters on the admin listener count reviews and denials."""
    for _ in range(5):
        await stack.call("mallory", "/api/v1/namespaces/default/pods")
    async with stack.session.get(stack.guard.admin + "/metrics") as response:
        text = await response.text()
    lines = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
             if line.startswith("guard_authz_")}
    assert lines["guard_authz_denied_total"] == 5
    assert lines["guard_authz_subject_access_reviews_total"] >= 1
