"""The adaptive concurrency limit against the simulator: a flood of LISTs, each client within its
quota, whose sum the simulated api-server cannot bear (its memory budget crashes it first, its
max-in-flight answers 429 next). Straight at it, the simulator crashes; through guard with
`adaptive:` on, it never crashes nor sends a 429, guard sheds the excess with its own 429 ("at
capacity"), a light tenant's reads all succeed, and the limit, its metrics and its debug page say
so. Every assertion is a count read from the simulator, guard or the clients."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chaos.observe import parse_metrics
from tests.conftest import SimServer
from tests.policies import write_policy
from tests.proxy_fakes import GuardProcess

PODS, POD_BYTES = 100, 8192
"""team-a's pods: a LIST of them is about 0.8 MB."""
SIM_ARGS = ("--max-readonly-inflight", "40", "--base-service-ms", "20", "--per-object-service-us", "200",
            "--memory-budget-mb", "24", "--restart-delay-s", "1")
"""About 30 such LISTs in flight crash a replica; 40 requests in flight get 429s."""
FLOOD = 48
"""Flood clients, a closed loop each."""
async def _seed(session: aiohttp.ClientSession, sim: SimServer) -> None:
    """team-a's pods (with a fat annotation) and a configmap team-b reads."""
    headers = {"Authorization": f"Bearer {sim.tokens['admin']}"}
    pad = "x" * POD_BYTES
    for i in range(PODS):
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"p{i}", "annotations": {"pad": pad}},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        async with session.post(f"{sim.url}/api/v1/namespaces/team-a/pods", json=pod, headers=headers) as r:
            assert r.status == 201, await r.text()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"k": "v"}}
    async with session.post(f"{sim.url}/api/v1/namespaces/team-b/configmaps", json=cm, headers=headers) as r:
        assert r.status == 201, await r.text()


async def _loop(session: aiohttp.ClientSession, url: str, token: str, seconds: float,
                statuses: Counter[int], *, pause: float = 0.0) -> None:
    """Requests one after another until `seconds` are over; a failed connection counts as 0."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    while loop.time() < end:
        try:
            async with session.get(url, headers=headers) as r:
                await r.read()
                statuses[r.status] += 1
                if r.status == 429:
                    await asyncio.sleep(min(float(r.headers.get("Retry-After", "1")), 0.2))
        except (aiohttp.ClientError, TimeoutError):
            statuses[0] += 1
            await asyncio.sleep(0.05)
        if pause:
            await asyncio.sleep(pause)


async def _flood(base: str, sim: SimServer, seconds: float) -> tuple[Counter[int], Counter[int]]:
    """FLOOD clients LIST team-a's pods, team-b reads one configmap 20 times a second."""
    flood: Counter[int] = Counter()
    light: Counter[int] = Counter()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        await asyncio.gather(
            *(_loop(session, f"{base}/api/v1/namespaces/team-a/pods", sim.tokens["alice"], seconds, flood)
              for _ in range(FLOOD)),
            _loop(session, f"{base}/api/v1/namespaces/team-b/configmaps/settings", sim.tokens["bob"],
                  seconds, light, pause=0.05))
    return flood, light


async def _sim_figures(sim: SimServer) -> dict[str, float]:
    """Crashes, 429s and answered LISTs of the simulator's replica, from its /metrics (read once
    it is back, when the flood left it crashed)."""
    async with aiohttp.ClientSession() as session:
        for _ in range(100):  # bounded polling while a crashed replica restarts
            try:
                async with session.get(sim.url + "/metrics") as r:
                    samples = parse_metrics(await r.text())
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the simulator never came back")
    figures: Counter[str] = Counter()
    for name, labels, value in samples:
        if name == "sim_crashes_total":
            figures["crashes"] += value
        elif name == "sim_requests_total" and labels["verb"] == "LIST":
            figures["lists"] += value
            figures["429"] += value if labels["code"] == "429" else 0
        elif name == "sim_requests_total" and labels["code"] == "429":
            figures["429"] += value
    return dict(figures)


def _config(tmp_path: Path, sim: SimServer) -> Path:
    policies = tmp_path / "policies"
    for name in ("team-a", "team-b"):
        write_policy(policies, name, "1000/s", 1000, scope="tenant")
    config = tmp_path / "guard.yaml"
    config.write_text(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n"
        f"clusters:\n  - name: sim\n    server: {sim.url}\n    token: {sim.tokens['admin']}\n"
        "    adaptive: {min: 2, initial: 8, max: 200}\n"
        f"policies: {policies}\naccessLog: {{path: {tmp_path / 'access.log'}}}\n")
    return config


async def _seeded(sim_server: Callable[..., SimServer]) -> SimServer:
    sim = sim_server(*SIM_ARGS)
    async with aiohttp.ClientSession() as session:
        await _seed(session, sim)
    return sim


async def test_straight_at_the_simulator_the_flood_crashes_it(sim_server: Callable[..., SimServer]) -> None:
    """Without guard the flood's LISTs exceed the replica's memory: it crashes, and the light
    tenant loses reads while it is down."""
    sim = await _seeded(sim_server)
    flood, light = await _flood(sim.url, sim, 3)
    figures = await _sim_figures(sim)
    assert figures.get("crashes", 0) >= 1, (figures, flood)
    assert light[200] < sum(light.values()), light


@pytest.mark.timeout(120)
async def test_through_guard_the_adaptive_limit_keeps_the_simulator_standing(
        tmp_path: Path, sim_server: Callable[..., SimServer]) -> None:
    """Through guard with `adaptive:` on: 0 crashes and 0 simulator 429s; the flood's excess is
    answered 429 by guard (at capacity) and logged as `overload`; every light read succeeds; the
    limit learnt stays under what crashes the replica."""
    sim = await _seeded(sim_server)
    guard = await GuardProcess(_config(tmp_path, sim)).start()
    try:
        flood, light = await _flood(guard.url, sim, 6)
        async with aiohttp.ClientSession() as session:
            async with session.get(guard.admin + "/debug/guard/adaptive") as r:
                page = (await r.json())[0]
            async with session.get(guard.admin + "/metrics") as r:
                metrics = parse_metrics(await r.text())
    finally:
        await guard.stop()
    figures = await _sim_figures(sim)
    assert figures.get("crashes", 0) == 0 and figures.get("429", 0) == 0, (figures, page)
    assert flood[200] >= 100 and flood[429] >= 1 and set(flood) <= {200, 429}, flood
    assert flood[200] == figures["lists"], (flood, figures)
    assert set(light) == {200}, light
    assert page["enabled"] and not page["probing"] and page["limit"] < 30, page
    decided = {labels["decision"]: value for name, labels, value in metrics
               if name == "guard_upstream_concurrency_decisions_total" and labels["tenant"] == "team-a"}
    assert decided["overload"] == flood[429], (decided, flood)
    assert decided["admitted"] + decided.get("held", 0) == flood[200]
    limit = [value for name, labels, value in metrics if name == "guard_upstream_concurrency_limit"]
    assert limit == [page["limit"]]
    lines = [json.loads(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    overload = [line for line in lines if line.get("decision") == "overload"]
    assert len(overload) == flood[429] and all(line["status"] == 429 for line in overload)


async def test_exempt_requests_and_watches_are_never_held(
        tmp_path: Path, sim_server: Callable[..., SimServer]) -> None:
    """A limit of one slot, held by alice's slow LIST (100 pods at 30 ms each): bob's LIST is
    answered 429 at once (a TooManyRequests Status saying the cluster is at capacity, with
    Retry-After), while the admin (system:masters, exempt) and bob's watch pass; the simulator
    never saw bob's refused LIST."""
    sim = sim_server("--per-object-service-us", "30000")
    async with aiohttp.ClientSession() as session:
        await _seed(session, sim)
    config = _config(tmp_path, sim)
    config.write_text(config.read_text().replace(
        "adaptive: {min: 2, initial: 8, max: 200}", "adaptive: {min: 1, initial: 1, max: 1, queueLength: 0}"))
    guard = await GuardProcess(config).start()
    pods = "/api/v1/namespaces/team-a/pods"
    try:
        async with aiohttp.ClientSession() as session:
            def get(user: str, path: str) -> Any:
                return session.get(guard.url + path, headers={"Authorization": f"Bearer {sim.tokens[user]}"})

            async def slow() -> int:
                async with get("alice", pods) as r:
                    await r.read()
                    return r.status

            serving = asyncio.ensure_future(slow())
            for _ in range(500):  # bounded polling until alice's LIST holds the slot
                async with session.get(guard.admin + "/debug/guard/adaptive") as r:
                    if (await r.json())[0]["inFlight"] == 1:
                        break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("alice's LIST never took the slot")
            async with get("bob", "/api/v1/namespaces/team-b/configmaps") as r:
                refused, status, retry_after = r.status, await r.json(), r.headers.get("Retry-After")
            async with get("admin", "/api/v1/namespaces/team-b/configmaps") as r:
                exempt = r.status
            async with get("bob", "/api/v1/namespaces/team-b/configmaps?watch=true&timeoutSeconds=1") as r:
                await r.read()
                watched = r.status
            assert await serving == 200
            async with session.get(guard.admin + "/debug/guard/adaptive") as r:
                page = (await r.json())[0]
    finally:
        await guard.stop()
    assert refused == 429 and retry_after is not None and int(retry_after) >= 1
    assert status["reason"] == "TooManyRequests" and "at capacity" in status["message"]
    assert exempt == 200 and watched == 200
    assert page["decisions"] == {"admitted": 1, "overload": 1} and page["inFlight"] == 0
    assert sim.state()["users"]["bob"]["verbs"] == {"watch": 1}
