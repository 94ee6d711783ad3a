"""guard in front of a fake api-server, over real sockets: admission metrics after a flood, the debug
dumps, access-log lines for 429 and 401 answers, and LIST pricing by observed object counts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from chaos.observe import decision_counts, parse_metrics
from chaos.ports import free_port
from tests.proxy_fakes import FakeApiServer, RunningGuard, start_guard, write_settings

ALICE = {"Authorization": "Bearer alice-token"}
NOBODY = {"Authorization": "Bearer nobody-token"}
POLICY = """apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {name: team-a}
spec:
  subjects: [{kind: Group, name: team-a}]
  rules:
    - name: reads
      quota: {rate: 1/m, burst: %s}
      cost: {list: {base: 1, perObjects: 10, max: 30, unmeasured: 0}}
"""
# unmeasured: 0 prices a LIST of a never-measured namespace at 1, so these tests see the learning alone.


@dataclass
class ListingApiServer(FakeApiServer):
    """The fake api-server, plus ConfigMap LISTs: namespace -> (objects, bytes of data per object).
    Bodies up to 64 KiB carry a Content-Length; larger ones are sent chunked (streamed)."""

    namespaces: dict[str, tuple[int, int]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/configmaps", self.configmaps)
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self.token_review)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        return app

    async def configmaps(self, request: web.Request) -> web.StreamResponse:
        count, size = self.namespaces.get(request.match_info["ns"], (0, 0))
        items = [{"metadata": {"name": f"cm-{i}", "resourceVersion": str(i + 10)}, "data": {"d": "x" * size}}
                 for i in range(count)]
        body = json.dumps({"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {"resourceVersion": "99"},
                           "items": items}).encode()
        if len(body) <= 64 * 1024:
            return web.Response(body=body, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for at in range(0, len(body), 16 * 1024):
            await response.write(body[at:at + 16 * 1024])
        await response.write_eof()
        return response


@pytest.fixture
async def api() -> AsyncIterator[ListingApiServer]:
    fake = ListingApiServer(namespaces={"mid": (100, 10), "small": (5, 1000), "big": (200, 1000)})
    await fake.start()
    yield fake
    await fake.stop()


async def _guard(tmp_path: Path, api: ListingApiServer, burst: int) -> RunningGuard:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "team-a.yaml").write_text(POLICY % burst)
    return await start_guard(write_settings(tmp_path, [api.url], extra=f"policies: {policies}\n"))


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _statuses(client: aiohttp.ClientSession, url: str, n: int,
                    headers: dict[str, str] = ALICE) -> list[int]:
    out = []
    for _ in range(n):
        async with client.get(url, headers=headers) as r:
            await r.read()
            out.append(r.status)
    return out


async def _log_lines(path: Path, want: int) -> list[dict[str, object]]:
    for _ in range(200):  # the log is flushed at the end of a loop iteration; give it a few
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= want:
            return [json.loads(line) for line in lines]
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {want} access-log lines in {path}")


async def test_after_a_flood_metrics_show_the_tenants_rejections(
        tmp_path: Path, api: ListingApiServer, client: aiohttp.ClientSession) -> None:
    """10 GETs against burst 3: /metrics counts 3 admitted and 7 rejected for team-a (as chaos reads
    them), 7 quota rejections, the bucket nearly empty, nothing in flight, and no user or token."""
    guard = await _guard(tmp_path, api, 3)
    try:
        statuses = await _statuses(client, guard.url + "/api/v1/namespaces/a/pods/p", 10)
        async with client.get(guard.admin + "/metrics") as r:
            text = await r.text()
    finally:
        await guard.server.stop()
    assert statuses == [200] * 3 + [429] * 7
    counts = decision_counts(parse_metrics(text))
    assert (counts[("team-a", "admitted")], counts[("team-a", "rejected")]) == (3, 7)
    assert ('guard_admission_decisions_total{cluster="dev",decision="rejected",rule="reads",'
            'tenant="team-a"} 7.0') in text
    assert 'guard_admission_rejections_total{cluster="dev",reason="quota",tenant="team-a"} 7.0' in text
    assert 'guard_admission_inflight{cluster="dev",tenant="team-a"} 0.0' in text
    assert 'guard_admission_seats_in_use{priority_level="global-default"} 0.0' in text
    tokens = [v for n, labels, v in parse_metrics(text)
              if n == "guard_bucket_tokens" and labels == {"tenant": "team-a", "rule": "reads"}]
    assert len(tokens) == 1 and tokens[0] < 1
    assert "alice" not in text


async def test_debug_pages_dump_buckets_queues_and_policies(
        tmp_path: Path, api: ListingApiServer, client: aiohttp.ClientSession) -> None:
    """buckets shows team-a's drained bucket; queues its priority levels; policies maps the ids that
    responses carry to tenant and rule names; none shows a token."""
    guard = await _guard(tmp_path, api, 3)
    try:
        async with client.get(guard.url + "/api/v1/namespaces/a/pods/p", headers=ALICE) as r:
            tenant_id, rule_id = r.headers["X-Guard-Tenant-Id"], r.headers["X-Guard-Rule-Id"]
        pages = {}
        for name in ("buckets", "queues", "policies"):
            async with client.get(f"{guard.admin}/debug/guard/{name}") as r:
                assert r.status == 200
                pages[name] = await r.text()
    finally:
        await guard.server.stop()
    buckets = json.loads(pages["buckets"])
    assert [(b["key"], b["remaining"]) for b in buckets] == [("{team-a}:reads", pytest.approx(2, abs=0.01))]
    levels = [q["level"] for q in json.loads(pages["queues"]) if "level" in q]
    assert "global-default" in levels
    policies = json.loads(pages["policies"])
    team_a = next(t for t in policies["tenants"] if t["name"] == "team-a")
    assert team_a["id"] == tenant_id
    assert [(r["name"], r["id"], r["quota"]["burst"]) for r in team_a["rules"]] == [("reads", rule_id, 3.0)]
    assert not any("alice-token" in page or "guard-own-token" in page for page in pages.values())


async def test_access_log_says_429_and_401_with_the_decision_and_no_token(
        tmp_path: Path, api: ListingApiServer, client: aiohttp.ClientSession) -> None:
    """A rejected request is logged as 429 with tenant, rule, decision and retry_after; a bad token's
    request as 401; neither line contains a token."""
    guard = await _guard(tmp_path, api, 1)
    try:
        assert await _statuses(client, guard.url + "/api/v1/namespaces/a/pods/p", 2) == [200, 429]
        assert await _statuses(client, guard.url + "/api/v1/namespaces/a/pods/p", 1, NOBODY) == [401]
        entries = await _log_lines(tmp_path / "access.log", 3)
    finally:
        await guard.server.stop()
    ok, rejected, unauthorized = entries
    assert (ok["status"], ok["decision"], ok["tenant"], ok["rule"]) == (200, "admitted", "team-a", "reads")
    assert "retry_after" not in ok
    assert (rejected["status"], rejected["decision"], rejected["tenant"], rejected["rule"]) == (
        429, "rejected", "team-a", "reads")
    assert isinstance(rejected["retry_after"], int) and rejected["retry_after"] >= 1
    assert unauthorized["status"] == 401 and "decision" not in unauthorized
    text = (tmp_path / "access.log").read_text()
    assert "alice-token" not in text and "nobody-token" not in text


async def test_a_list_observed_whole_makes_the_next_unlimited_lists_cost_more(
        tmp_path: Path, api: ListingApiServer, client: aiohttp.ClientSession) -> None:
    """Burst 40, 1 + objects/10 per LIST: once a LIST has returned 100 objects, each further LIST of
    that namespace costs 11, so 8 LISTs get 1 + 3 admitted (all 8 if counts were not learnt)."""
    guard = await _guard(tmp_path, api, 40)
    try:
        statuses = await _statuses(client, guard.url + "/api/v1/namespaces/mid/configmaps", 8)
    finally:
        await guard.server.stop()
    assert statuses == [200] * 4 + [429] * 4


async def test_a_streamed_list_is_priced_by_its_bytes_over_the_learnt_object_size(
        tmp_path: Path, api: ListingApiServer, client: aiohttp.ClientSession) -> None:
    """A small LIST teaches ~1 KB per ConfigMap; a 200 KB streamed LIST is then counted as ~200
    objects (cost 21): after both, a burst of 40 admits one more LIST of that namespace, not four."""
    guard = await _guard(tmp_path, api, 40)
    try:
        assert await _statuses(client, guard.url + "/api/v1/namespaces/small/configmaps", 1) == [200]
        assert await _statuses(client, guard.url + "/api/v1/namespaces/big/configmaps", 1) == [200]
        statuses = await _statuses(client, guard.url + "/api/v1/namespaces/big/configmaps", 4)
    finally:
        await guard.server.stop()
    assert statuses == [200, 429, 429, 429]


async def test_requests_in_flight_and_upstream_failures_are_exported(
        tmp_path: Path, api: ListingApiServer, client: aiohttp.ClientSession) -> None:
    """A request the api-server holds shows as 1 ordinary request in flight; a cluster that refuses
    connections (here already for the TokenReview) shows as one upstream error."""
    guard = await _guard(tmp_path, api, 10)
    down = await start_guard(write_settings(tmp_path, [f"http://127.0.0.1:{free_port()}"], name="down.yaml"))
    try:
        held = asyncio.ensure_future(_statuses(client, guard.url + "/api/v1/namespaces/a/hold/x", 1))
        for _ in range(200):
            if api.seen:
                break
            await asyncio.sleep(0.01)
        async with client.get(guard.admin + "/metrics") as r:
            during = await r.text()
        api.hold.set()
        assert await held == [200]
        async with client.get(guard.admin + "/metrics") as r:
            after = await r.text()
        failures = await _statuses(client, down.url + "/api/v1/namespaces/a/pods/p", 1)
        async with client.get(down.admin + "/metrics") as r:
            failed = await r.text()
    finally:
        await guard.server.stop()
        await down.server.stop()
    assert 'guard_requests_in_flight{cluster="dev",kind="ordinary"} 1.0' in during
    assert 'guard_requests_in_flight{cluster="dev",kind="ordinary"} 0.0' in after
    assert failures in ([502], [503])
    errors = [(labels["cluster"], v) for n, labels, v in parse_metrics(failed)
              if n == "guard_upstream_errors_total"]
    assert errors == [("dev", 1.0)]
