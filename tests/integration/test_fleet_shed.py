"""The fleet's emergency brake with real parts: three `guard serve` processes sharing one real
redis-server in front of the simulator, orders given with `guard fleet shed|lift|list`.

An order reaches the three replicas, refuses what it names and nothing else (counted per user),
`lift` ends it, `--everything` spares exempt traffic and expires by itself, orders survive a
restart (from Redis, and from disk while Redis is down), and unsigned or tampered orders are
refused and counted by every replica."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from guard.admission.shedding import ShedOrder
from guard.federation import bundles
from guard.federation import shedding as fed
from tests.conftest import SimServer
from tests.integration.federation_guards import all_metric, eventually, metric
from tests.policies import write_policy
from tests.proxy_fakes import GuardProcess
from tests.redis_servers import RedisServer, redis_server  # noqa: F401

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]
REASON = "INC-4711: etcd compaction stalled"
USERS = ("alice", "bob", "mallory", "admin")
"""alice (team-a), bob (team-b), mallory (no tenant: the catch-all), admin (system:masters: exempt)."""
PATHS = {"alice": "/api/v1/namespaces/team-a/configmaps", "bob": "/api/v1/namespaces/team-b/configmaps",
         "mallory": "/version", "admin": "/api/v1/namespaces/team-a/configmaps"}
"""What each user reads (what the simulator's RBAC lets each read)."""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guard.cli", *args], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)


def keys(tmp_path: Path) -> list[str]:
    return ["--signing-key", str(tmp_path / "fleet.key"), "--public-key", str(tmp_path / "fleet.pub")]


def shed(tmp_path: Path, redis: RedisServer, *what: str, duration: str = "10m") -> str:
    """Give an order with the CLI; its id."""
    done = cli("fleet", "shed", "--redis", redis.url, *keys(tmp_path), "--cluster", "dev", *what,
               "--for", duration, "--reason", REASON)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[2]


def write_configs(tmp_path: Path, sim: SimServer, redis: RedisServer) -> list[Path]:
    assert cli("policy", "keygen", str(tmp_path / "fleet")).returncode == 0
    policies = write_policy(tmp_path / "policies", "team-a", "200/s", 200)
    write_policy(policies, "team-b", "200/s", 200)
    configs = []
    for i in range(3):
        config = tmp_path / f"guard-{i}.yaml"
        config.write_text(
            f"listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n"
            f"clusters:\n  - name: dev\n    server: {sim.url}\n    token: {sim.tokens['admin']}\n"
            f"forwarding: passthrough\npolicies: {policies}\naccessLog: {{enabled: false}}\n"
            f"admission: {{catchAll: {{quota: {{rate: 200/s, burst: 200}}}}}}\n"
            f"redis: {{url: '{redis.url}', publicKey: {tmp_path / 'fleet.pub'}, "
            f"bundleDir: {tmp_path / f'state-{i}'}}}\n")
        configs.append(config)
    return configs


@asynccontextmanager
async def fleet(tmp_path: Path, sim: SimServer, redis: RedisServer) -> AsyncIterator[list[GuardProcess]]:
    guards = [GuardProcess(c) for c in write_configs(tmp_path, sim, redis)]
    try:
        started = await asyncio.gather(*(g.start() for g in guards), return_exceptions=True)
        assert all(isinstance(g, GuardProcess) for g in started), started
        yield guards
    finally:
        for guard in guards:
            if guard.proc is not None:
                await guard.stop()


REFUSALS: list[dict[str, object]] = []
"""Every refusal's body that `sweep` saw, latest last."""


async def sweep(guards: list[GuardProcess], sim: SimServer, per_user: int = 6,
                users: tuple[str, ...] = USERS) -> dict[str, Counter[int]]:
    """`per_user` LISTs of configmaps per user, spread over the guards: statuses per user (the
    refusals' bodies go to REFUSALS)."""
    seen: dict[str, Counter[int]] = {u: Counter() for u in users}
    async with aiohttp.ClientSession() as client:
        for i in range(per_user):
            for user in users:
                url = f"{guards[i % len(guards)].url}{PATHS[user]}"
                async with client.get(url, headers={"Authorization": f"Bearer {sim.tokens[user]}"}) as r:
                    body = await r.read()
                    seen[user][r.status] += 1
                    if r.status >= 400:
                        REFUSALS.append(json.loads(body))
    return seen


async def debug_page(guard: GuardProcess) -> dict[str, list[dict[str, object]]]:
    async with aiohttp.ClientSession() as client, client.get(f"{guard.admin}/debug/guard/shed") as r:
        return dict(await r.json())


async def total(guards: list[GuardProcess], name: str) -> float:
    return sum(await asyncio.gather(*(metric(g, name) for g in guards)))


async def test_an_order_reaches_three_replicas_refuses_what_it_names_and_lift_ends_it(
        tmp_path: Path, sim_server: Callable[..., SimServer], redis_server: RedisServer) -> None:  # noqa: F811
    sim = sim_server()
    async with fleet(tmp_path, sim, redis_server) as guards:
        before = await sweep(guards, sim)
        assert all(c == Counter({200: 6}) for c in before.values()), before
        issued = time.monotonic()
        order = shed(tmp_path, redis_server, "--user", "alice")
        assert await eventually(lambda: all_metric(guards, "guard_shed_orders", 1), 10, step=0.02)
        print(f"\nshed order in force on 3 replicas {1000 * (time.monotonic() - issued):.0f} ms after "
              f"`guard fleet shed` began (includes the CLI's start)")
        during = await sweep(guards, sim)
        assert during["alice"] == Counter({429: 6})
        assert all(during[u] == Counter({200: 6}) for u in ("bob", "mallory", "admin")), during
        refusal = REFUSALS[-1]
        assert refusal["kind"] == "Status" and refusal["reason"] == "TooManyRequests"
        assert REASON in str(refusal["message"]) and order in str(refusal["message"])
        assert await total(guards, "guard_shed_refusals") == 6
        pages = [await debug_page(g) for g in guards]
        assert all(p["orders"][0]["id"] == order and p["orders"][0]["users"] == ["alice"] for p in pages)
        assert sum(p["orders"][0]["refused_here"] for p in pages) == 6
        listing = cli("fleet", "list", "--redis", redis_server.url,
                      "--public-key", str(tmp_path / "fleet.pub"))
        assert f"{order}\tin-force" in listing.stdout and "user=alice" in listing.stdout
        for guard in guards:
            await guard.wait_for_log(f"shed order {order} in force")
        guards[2].signal(signal.SIGHUP)  # a reload builds a new runtime over the same orders
        await guards[2].wait_for_log("reloaded settings")
        reloaded = await sweep(guards[2:], sim, per_user=2, users=("alice", "bob"))
        assert reloaded == {"alice": Counter({429: 2}), "bob": Counter({200: 2})}, reloaded

        lifted = cli("fleet", "lift", order, "--redis", redis_server.url, *keys(tmp_path))
        assert lifted.returncode == 0, lifted.stderr
        assert await eventually(lambda: all_metric(guards, "guard_shed_orders", 0), 10, step=0.02)
        after = await sweep(guards, sim)
        assert all(c == Counter({200: 6}) for c in after.values()), after
        for guard in guards:
            await guard.wait_for_log(f"shed order {order} lifted")
        assert cli("fleet", "lift", order, "--redis", redis_server.url, *keys(tmp_path)).returncode == 1
        lags = [await delivery(guards, redis_server, tmp_path, i) for i in range(5)]
    print("shed order published -> in force on all 3 replicas (ms, 5 orders): "
          + " ".join(f"{1000 * lag:.0f}" for lag in lags))


async def delivery(guards: list[GuardProcess], redis: RedisServer, tmp_path: Path, i: int) -> float:
    """Seconds from an order's publication to all three replicas holding it (polled every 10 ms)."""
    now = time.time()
    order = ShedOrder(id=f"lag{i}", clusters=("other",), reason="measuring", issued=now, expires=now + 60,
                      users=("nobody",))
    client = aioredis.from_url(redis.url)
    try:
        started = time.monotonic()
        await client.hset("guard:{shed}:orders", order.id,
                          fed.record(order, bundles.load_private_key(tmp_path / "fleet.key")))
        await client.publish("guard:shed", order.id)
    finally:
        await client.aclose()
    assert await eventually(lambda: all_metric(guards, "guard_shed_orders", i + 1), 10, step=0.01)
    return time.monotonic() - started


async def test_everything_spares_exempt_traffic_and_expires_by_itself(
        tmp_path: Path, sim_server: Callable[..., SimServer], redis_server: RedisServer) -> None:  # noqa: F811
    sim = sim_server()
    async with fleet(tmp_path, sim, redis_server) as guards:
        order = shed(tmp_path, redis_server, "--everything", duration="8s")
        assert await eventually(lambda: all_metric(guards, "guard_shed_orders", 1), 10, step=0.02)
        during = await sweep(guards, sim, per_user=3)
        expired = await eventually(lambda: all_metric(guards, "guard_shed_orders", 0), 20)
        after = await sweep(guards, sim, per_user=3)
        for guard in guards:
            await guard.wait_for_log(f"shed order {order} expired")
    assert all(during[u] == Counter({503: 3}) for u in ("alice", "bob", "mallory")), during
    assert during["admin"] == Counter({200: 3})
    assert expired
    assert all(c == Counter({200: 3}) for c in after.values()), after


async def test_orders_survive_a_restart_from_redis_and_from_disk_while_redis_is_down(
        tmp_path: Path, sim_server: Callable[..., SimServer], redis_server: RedisServer) -> None:  # noqa: F811
    sim = sim_server()
    async with fleet(tmp_path, sim, redis_server) as guards:
        shed(tmp_path, redis_server, "--tenant", "team-a", "--verb", "list", "--resource", "configmaps")
        assert await eventually(lambda: all_metric(guards, "guard_shed_orders", 1), 10, step=0.02)
        await guards[0].stop()
        (tmp_path / "state-0" / fed.DISK_NAME).unlink()  # this one can only learn it from Redis
        await guards[0].start()
        assert await metric(guards[0], "guard_shed_orders") == 1
        redis_server.kill()
        await guards[1].stop()
        await guards[1].start()  # Redis down: the order kept on disk
        restarted = await sweep(guards[:2], sim, per_user=4, users=("alice", "bob"))
        assert restarted["alice"] == Counter({429: 4}) and restarted["bob"] == Counter({200: 4}), restarted
        assert await metric(guards[2], "guard_shed_orders") == 1  # kept while Redis is down
        redis_server.start()


async def test_unsigned_and_tampered_orders_are_refused_and_counted(
        tmp_path: Path, sim_server: Callable[..., SimServer], redis_server: RedisServer) -> None:  # noqa: F811
    sim = sim_server()
    async with fleet(tmp_path, sim, redis_server) as guards:
        assert cli("policy", "keygen", str(tmp_path / "intruder")).returncode == 0
        wrong = cli("fleet", "shed", "--redis", redis_server.url,
                    "--signing-key", str(tmp_path / "intruder.key"),
                    "--public-key", str(tmp_path / "fleet.pub"), "--cluster", "dev", "--everything",
                    "--for", "1m", "--reason", "x")
        assert wrong.returncode == 1 and "does not match" in wrong.stderr
        typo = cli("fleet", "shed", "--redis", redis_server.url, "--signing-key", str(tmp_path / "fleet.key"),
                   "--config", str(tmp_path / "guard-0.yaml"), "--cluster", "dve", "--user", "alice",
                   "--for", "1m", "--reason", "typo")
        assert typo.returncode == 0 and "fronts no cluster 'dve'" in typo.stderr
        now = time.time()
        good = ShedOrder(id="bad1", clusters=("dev",), reason="forged", issued=now, expires=now + 600,
                         everything=True)
        intruder = bundles.load_private_key(tmp_path / "intruder.key")
        fleet_key = bundles.load_private_key(tmp_path / "fleet.key")
        tampered = json.loads(fed.record(ShedOrder(**{**vars(good), "id": "bad2", "everything": False,
                                                     "users": ("bob",)}), fleet_key))
        tampered["payload"] = tampered["payload"].replace('"bob"', '"alice"')
        records = {"bad1": fed.record(good, intruder), "bad2": json.dumps(tampered),
                   "bad3": json.dumps({"payload": good.payload().decode().replace("bad1", "bad3"),
                                       "signature": ""})}
        client = aioredis.from_url(redis_server.url)
        try:
            await client.hset("guard:{shed}:orders", mapping=records)
            await client.publish("guard:shed", "bad1")
        finally:
            await client.aclose()
        assert await eventually(lambda: all_metric(guards, "guard_shed_orders_refused", 3), 10)
        await asyncio.sleep(2.5)  # two more re-reads: each bad record is still counted once
        assert await all_metric(guards, "guard_shed_orders_refused", 3)
        assert await all_metric(guards, "guard_shed_orders", 1)  # only the typo's, aimed at no cluster here
        seen = await sweep(guards, sim, per_user=3)
        assert all(c == Counter({200: 3}) for c in seen.values()), seen
        for guard in guards:
            await guard.wait_for_log("refused shed order bad2: bad signature")
