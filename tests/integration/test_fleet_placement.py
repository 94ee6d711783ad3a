"""One policy for many clusters, through real `guard serve` processes and simulators: a rule placed
by label applies on the matching cluster and not on the other, an override changes the admitted
count on one cluster only; and a pushed bundle (placement included) is in force on three replicas
long before their 60 s poll would have fetched it, also after Redis restarted under them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import SimServer
from tests.integration.federation_guards import all_metric, eventually, metric
from tests.proxy_fakes import GuardProcess
from tests.redis_servers import RedisServer, redis_server  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
CONFIGMAPS = "/api/v1/namespaces/team-a/configmaps"
CONFIGMAP = f"{CONFIGMAPS}/absent"  # 404 from the api-server: admitted, and counted there

# LISTs on prod clusters have their own small quota (placed by label); every other request shares
# `reads`, whose burst an override raises on west alone (west then has its own bucket).
PLACED = """apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {name: team-a}
spec:
  subjects: [{kind: Group, name: team-a}]
  rules:
    - name: prod-lists
      placement: {selector: {matchLabels: {env: prod}}}
      verbs: [list]
      quota: {rate: 1/h, burst: 3, maxWait: 0s}
      cost: {list: {unmeasured: 0}}
    - name: reads
      quota: {rate: 1/h, burst: 10, maxWait: 0s}
      cost: {list: {unmeasured: 0}}
  overrides:
    - clusters: [west]
      rules: [reads]
      fields: {quota: {rate: 1/h, burst: 6, maxWait: 0s}}
"""


async def _statuses(session: aiohttp.ClientSession, url: str, token: str, count: int) -> list[int]:
    out = []
    for _ in range(count):
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
            await r.read()
            out.append(r.status)
    return out


def _alice(sim: SimServer) -> int:
    """Requests the simulator served to alice (guard's own TokenReviews are not hers)."""
    return int(sim.state()["users"].get("alice", {}).get("requests", 0))


async def test_a_placed_rule_and_an_override_apply_on_their_cluster_only(
        sim_server: Callable[..., SimServer], tmp_path: Path) -> None:
    """east (env: prod) and west (env: dev) behind one guard. 20 LISTs each: east's fall under the
    placed `prod-lists` (3 admitted), west's under `reads` with west's overridden burst (6). Then 20
    GETs each: east's `reads` bucket (burst 10, untouched by the override) admits 10, west's own
    bucket is spent (0). Without placement east would admit 10 LISTs; without the override west
    would share east's bucket. Each simulator saw exactly what was admitted for it."""
    east, west = sim_server(), sim_server()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "team-a.yaml").write_text(PLACED)
    config = tmp_path / "guard.yaml"
    config.write_text(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nclusters:\n"
        f"  - {{name: east, server: {east.url}, token: {east.tokens['admin']}, labels: {{env: prod}}}}\n"
        f"  - {{name: west, server: {west.url}, token: {west.tokens['admin']}, labels: {{env: dev}},"
        " default: true}\n"
        f"policies: {tmp_path / 'policies'}\naccessLog: {{enabled: false}}\n")
    guard = await GuardProcess(config).start()
    try:
        async with aiohttp.ClientSession() as session:
            sims = (("east", east), ("west", west))
            lists = {name: await _statuses(session, f"{guard.url}/clusters/{name}{CONFIGMAPS}",
                                           sim.tokens["alice"], 20) for name, sim in sims}
            gets = {name: await _statuses(session, f"{guard.url}/clusters/{name}{CONFIGMAP}",
                                          sim.tokens["alice"], 20) for name, sim in sims}
    finally:
        await guard.stop()
    admitted = {name: sum(s != 429 for s in lists[name]) for name in lists}
    assert admitted == {"east": 3, "west": 6}
    assert {name: sum(s != 429 for s in gets[name]) for name in gets} == {"east": 10, "west": 0}
    assert (_alice(east), _alice(west)) == (13, 6)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guard.cli", *args], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)


GENEROUS = """apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {name: team-a}
spec:
  subjects: [{kind: Group, name: team-a}]
  rules:
    - name: reads
      quota: {rate: 1000/s, burst: 1000, maxWait: 0s}
"""
# The pushed bundle freezes team-a's reads on the prod clusters only.
FROZEN = GENEROUS + """  overrides:
    - selector: {matchLabels: {env: prod}}
      fields: {quota: {rate: 1/h, burst: 1, maxWait: 0s}}
"""


@asynccontextmanager
async def replicas(tmp_path: Path, sim: SimServer, redis: RedisServer) -> AsyncIterator[list[GuardProcess]]:
    """Three replicas polling for bundles only once a minute: two front `prod-eu` (env: prod), one
    `dev` (env: dev), all the same simulator; policies from files until a bundle is pushed."""
    assert _cli("policy", "keygen", str(tmp_path / "fleet")).returncode == 0
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "team-a.yaml").write_text(GENEROUS)
    guards = []
    for i, (cluster, env) in enumerate((("prod-eu", "prod"), ("prod-eu", "prod"), ("dev", "dev"))):
        config = tmp_path / f"guard-{i}.yaml"
        config.write_text(
            "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nclusters:\n"
            f"  - {{name: {cluster}, server: {sim.url}, token: {sim.tokens['admin']},"
            f" labels: {{env: {env}}}}}\n"
            f"policies: {tmp_path / 'policies'}\naccessLog: {{enabled: false}}\n"
            f"redis: {{url: '{redis.url}', publicKey: {tmp_path / 'fleet.pub'}, bundlePoll: 60s, "
            f"bundleDir: {tmp_path / f'bundle-{i}'}}}\n")
        guards.append(GuardProcess(config))
    started = await asyncio.gather(*(g.start() for g in guards), return_exceptions=True)
    try:
        assert all(isinstance(g, GuardProcess) for g in started), started
        assert await eventually(lambda: all_metric(guards, "guard_bundles_subscriptions", 1), 20)
        yield guards
    finally:
        for guard in guards:
            if guard.proc is not None:
                await guard.stop()


def _push(tmp_path: Path, redis: RedisServer, text: str) -> tuple[float, float]:
    """Push `text` as the fleet's bundle; when the push command started and when it returned."""
    pushed = tmp_path / "pushed"
    pushed.mkdir(exist_ok=True)
    started = time.monotonic()
    (pushed / "team-a.yaml").write_text(text)
    done = _cli("policy", "push", str(pushed), "--redis", redis.url,
                "--signing-key", str(tmp_path / "fleet.key"), "--public-key", str(tmp_path / "fleet.pub"))
    assert done.returncode == 0, done.stderr
    return started, time.monotonic()


def _report(what: str, pushed: tuple[float, float]) -> None:
    """A figure for docs/federation.md, printed (never asserted): push to in force everywhere."""
    now = time.monotonic()
    print(f"\n{what} in force on all three replicas {1000 * (now - pushed[0]):.0f} ms after "
          f"`guard policy push` started, {1000 * (now - pushed[1]):.0f} ms after it returned "
          "(bundlePoll 60 s)")


async def _refused(guards: list[GuardProcess], token: str, count: int = 10) -> list[int]:
    """How many of `count` GETs each guard refused with 429."""
    async with aiohttp.ClientSession() as session:
        return [sum(s == 429 for s in await _statuses(session, f"{g.url}{CONFIGMAP}", token, count))
                for g in guards]


@pytest.mark.redis
async def test_a_pushed_bundle_is_in_force_on_three_replicas_before_their_poll(
        tmp_path: Path, sim_server: Callable[..., SimServer], redis_server: RedisServer) -> None:  # noqa: F811
    """With a 60 s poll, the push notification alone brings bundle v1 to all three replicas (waited
    for up to 20 s; each counted one notification); its override is in force where it is placed:
    the prod replicas share one burst of 1 (each may spend a lease's starter token) and refuse at
    least 9 of 10 GETs each, the dev replica refuses none. Then Redis restarts under them, empty:
    each replica subscribes again and puts its verified v1 back (so the version counter does not
    start over), and a bundle pushed afterwards, lifting the freeze, is v2 and in force everywhere
    without waiting for the poll."""
    sim = sim_server()
    alice = sim.tokens["alice"]
    async with replicas(tmp_path, sim, redis_server) as guards:
        assert await _refused(guards, alice) == [0, 0, 0]
        pushed = _push(tmp_path, redis_server, FROZEN)
        assert await eventually(lambda: all_metric(guards, "guard_bundles_version", 1), 20, step=0.01)
        _report("bundle v1", pushed)
        assert [await metric(g, "guard_bundles_notified") for g in guards] == [1, 1, 1]
        refused = await _refused(guards, alice)
        assert refused[0] >= 9 and refused[1] >= 9 and refused[2] == 0, refused

        before = [await metric(g, "guard_bundles_subscriptions") for g in guards]
        redis_server.restart()

        async def resubscribed() -> bool:
            now = [await metric(g, "guard_bundles_subscriptions") for g in guards]
            return all(n > b for n, b in zip(now, before, strict=True))

        assert await eventually(resubscribed, 20)
        assert sum([await metric(g, "guard_bundles_restored") for g in guards]) >= 1
        pushed = _push(tmp_path, redis_server, GENEROUS)
        assert await eventually(lambda: all_metric(guards, "guard_bundles_version", 2), 20, step=0.01)
        _report("after a Redis restart, bundle v2", pushed)
        assert await _refused(guards, alice) == [0, 0, 0]
