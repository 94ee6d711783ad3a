"""Two simulated clusters behind one guard process: requests reach the cluster their `/clusters/{name}`
prefix, Host header or default names, and everything per cluster follows the route — TokenReviews,
policy `clusters:` selectors, metrics and access-log labels. Each simulator counts what it saw."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from chaos.observe import parse_metrics
from tests.conftest import SimServer
from tests.proxy_fakes import GuardProcess

POLICY = """apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {name: team-a}
spec:
  subjects: [{kind: Group, name: team-a}]
  rules:
    - name: east-configmaps
      clusters: [east]
      verbs: [get]
      resources: [configmaps]
      quota: {rate: 1/m, burst: 2}
    - name: reads
      quota: {rate: 100/s, burst: 100}
"""
PODS = "/api/v1/namespaces/team-a/pods"
CONFIGMAP = "/api/v1/namespaces/team-a/configmaps/absent"


@dataclass
class Stack:
    east: SimServer
    west: SimServer
    guard: GuardProcess
    log: Path
    session: aiohttp.ClientSession

    async def get(self, path: str, token: str, host: str | None = None) -> tuple[int, dict[str, object]]:
        headers = {"Authorization": f"Bearer {token}", **({"Host": host} if host else {})}
        async with self.session.get(self.guard.url + path, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    def alice(self, sim: SimServer) -> int:
        """Requests the simulator counted from alice (TokenReviews are guard's, not hers)."""
        return int(sim.state()["users"].get("alice", {}).get("requests", 0))


@pytest.fixture
async def stack(sim_server: Callable[..., SimServer], tmp_path: Path) -> AsyncIterator[Stack]:
    east, west = sim_server("--seed-objects", "3"), sim_server("--seed-objects", "5")
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "team-a.yaml").write_text(POLICY)
    log = tmp_path / "access.log"
    config = tmp_path / "guard.yaml"
    config.write_text(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nclusters:\n"
        f"  - {{name: east, server: {east.url}, token: {east.tokens['admin']}, hosts: [east.example]}}\n"
        f"  - {{name: west, server: {west.url}, token: {west.tokens['admin']}, hosts: [west.example],"
        " default: true}\n"
        f"policies: {policies}\naccessLog: {{path: {log}}}\n")
    guard = await GuardProcess(config).start()
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield Stack(east, west, guard, log, session)
    await guard.stop()


async def test_prefix_host_and_default_each_reach_their_cluster(stack: Stack) -> None:
    """`/clusters/east/...`, Host east.example and (no match) the default west: each simulator saw
    exactly the requests routed to it, with the prefix gone."""
    east_alice, west_alice = stack.east.tokens["alice"], stack.west.tokens["alice"]
    status, body = await stack.get(f"/clusters/east{PODS}?limit=500", east_alice)
    assert status == 200 and body["kind"] == "PodList"
    status, body = await stack.get("/clusters/east/version?x=1", stack.east.tokens["admin"])
    assert status == 200 and "gitVersion" in body
    status, body = await stack.get("/clusters/east", stack.east.tokens["admin"])  # "/": the sim's 404
    assert status == 404 and body["reason"] == "NotFound" and "cluster" not in str(body["message"])
    assert (await stack.get(PODS, east_alice, host="EAST.example:443"))[0] == 200
    assert (await stack.get(PODS, west_alice, host="127.0.0.1"))[0] == 200
    assert (await stack.get(f"/clusters/west{PODS}", west_alice, host="east.example"))[0] == 200
    assert (stack.alice(stack.east), stack.alice(stack.west)) == (2, 2)


async def test_identity_follows_the_route(stack: Stack) -> None:
    """A token of one cluster is reviewed by the cluster it is sent to: west's alice token is
    nobody at east (401, and east serves nothing), and guard's cache of it at west does not leak."""
    west_alice = stack.west.tokens["alice"]
    assert (await stack.get(PODS, west_alice))[0] == 200
    status, body = await stack.get(f"/clusters/east{PODS}", west_alice)
    assert (status, body["reason"]) == (401, "Unauthorized")
    assert stack.east.state()["totals"]["tokenReviewsFailed"] == 1
    assert stack.alice(stack.east) == 0 and stack.alice(stack.west) == 1


async def test_an_unknown_cluster_is_a_404_status_naming_it(stack: Stack) -> None:
    """To a caller the default cluster authenticates (one TokenReview there), the api-server's
    NotFound shape; neither simulator serves the request."""
    status, body = await stack.get(f"/clusters/north{PODS}", stack.west.tokens["alice"])
    assert status == 404 and body["kind"] == "Status" and body["reason"] == "NotFound"
    assert "north" in str(body["message"]) and body["details"] == {"name": "north", "kind": "clusters"}
    assert stack.east.state()["totals"]["requests"] == 0 and stack.alice(stack.west) == 0
    assert stack.west.state()["tokenReviews"] == {"alice": 1}


async def test_cluster_names_cannot_be_enumerated_before_authentication(stack: Stack) -> None:
    """Without credentials, or with a token no cluster accepts, a served and an unknown cluster get
    the same 401 Status: the 404 naming a cluster is only for callers the default cluster knows."""
    answers = []
    for cluster in ("east", "north"):
        for token in (None, "not-a-token"):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with stack.session.get(f"{stack.guard.url}/clusters/{cluster}{PODS}", headers=headers) as r:
                body = await r.json(content_type=None)
                answers.append((r.status, body["reason"], body["message"], body.get("details")))
    assert len(set(answers)) == 1 and answers[0][:2] == (401, "Unauthorized")


async def test_a_rule_for_one_cluster_limits_only_requests_routed_there(stack: Stack) -> None:
    """team-a's `clusters: [east]` rule (burst 2) rejects east's third GET of a ConfigMap (absent:
    404); west, under the generous rule, serves all five. Metrics (requests and admission decisions)
    and the access log carry the routed cluster."""
    east = [(await stack.get(f"/clusters/east{CONFIGMAP}", stack.east.tokens["alice"]))[0] for _ in range(5)]
    west = [(await stack.get(f"/clusters/west{CONFIGMAP}", stack.west.tokens["alice"]))[0] for _ in range(5)]
    assert east == [404, 404, 429, 429, 429] and west == [404] * 5
    assert (stack.alice(stack.east), stack.alice(stack.west)) == (2, 5)
    async with stack.session.get(stack.guard.admin + "/metrics") as r:
        samples = parse_metrics(await r.text())
    requests = {(labels["cluster"], labels["code"]): v for name, labels, v in samples
                if name == "guard_requests_total"}
    assert requests == {("east", "404"): 2, ("east", "429"): 3, ("west", "404"): 5}
    decisions = {(labels["cluster"], labels["rule"], labels["decision"]): v for name, labels, v in samples
                 if name == "guard_admission_decisions_total"}
    assert decisions == {("east", "east-configmaps", "admitted"): 2,
                         ("east", "east-configmaps", "rejected"): 3, ("west", "reads", "admitted"): 5}
    up = {labels["cluster"]: v for name, labels, v in samples if name == "guard_upstream_endpoint_up"}
    assert up == {"east": 1, "west": 1}
    lines = await _log_lines(stack.log, 10)
    assert [(line["cluster"], line["status"]) for line in lines] == [("east", s) for s in east] + [
        ("west", s) for s in west]


async def test_the_upstreams_page_lists_every_cluster(stack: Stack) -> None:
    """/debug/guard/upstreams: the default, each cluster's hosts and endpoints with their circuit."""
    async with stack.session.get(stack.guard.admin + "/debug/guard/upstreams") as r:
        page = await r.json()
    assert page["default"] == "west"
    clusters = {c["cluster"]: c for c in page["clusters"]}
    assert clusters["east"]["hosts"] == ["east.example"]
    assert [e["url"] for e in clusters["west"]["endpoints"]] == [stack.west.url]
    assert clusters["west"]["endpoints"][0]["state"] == "closed"
    assert clusters["east"]["health"]["checks"] is False


async def _log_lines(path: Path, want: int) -> list[dict[str, object]]:
    for _ in range(200):  # the log is written at the end of a loop iteration; give it a few
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= want:
            return [json.loads(line) for line in lines]
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {want} access-log lines in {path}")
