"""Quarantine and signed policy bundles reach every replica through real Redis; a Cluster leases."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from guard.admission.store import Limit
from guard.federation import bundles
from guard.federation.config import RedisSettings, parse_redis
from guard.federation.connection import Gateway
from guard.federation.leases import build_store
from guard.federation.quarantine import QuarantineBoard
from guard.policy.model import Quarantine
from tests.redis_servers import RedisClusterServers, RedisServer, redis_cluster, redis_server  # noqa: F401

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]
GUARD = [sys.executable, "-c", "import sys; from guard.cli import main; sys.exit(main())"]


def settings(url: str, **more: object) -> RedisSettings:
    parsed, problems = parse_redis({"url": url, **more}, "redis")
    assert problems == []
    return parsed


async def eventually(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        await asyncio.sleep(0.01)
    return False


def guard_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GUARD, *args], capture_output=True, text=True, timeout=30, cwd=ROOT)


async def test_quarantine_reaches_every_replica_and_release_works(redis_server: RedisServer) -> None:  # noqa: F811
    """Crossing the threshold on one replica quarantines the client on all three by pub/sub (their
    periodic check is switched off); `guard quarantine release` frees it everywhere."""
    boards = [QuarantineBoard(Gateway(settings(redis_server.url)), check_interval=30.0) for _ in range(3)]
    for board in boards:
        await board.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(b.ready.wait() for b in boards)), 5)
        await asyncio.sleep(0.1)  # SUBSCRIBE is acknowledged before the server registers it
        policy = Quarantine(threshold=5, window=1.0, ttl=60.0)
        crossed = [boards[0].report_rejection("user:runaway", policy, tenant="team-a") for _ in range(5)]
        assert crossed == [False] * 4 + [True]
        started = time.monotonic()
        assert await eventually(lambda: all(b.is_quarantined("user:runaway") for b in boards))
        print(f"\nquarantine reached 3 replicas in {1000 * (time.monotonic() - started):.0f} ms")
        assert boards[1].is_quarantined("user:calm") is None
        listing = guard_cli("quarantine", "list", "--redis", redis_server.url)
        assert listing.returncode == 0 and "user:runaway" in listing.stdout and "level=1" in listing.stdout
        released = guard_cli("quarantine", "release", "user:runaway", "--redis", redis_server.url)
        assert released.returncode == 0, released.stderr
        assert await eventually(lambda: not any(b.is_quarantined("user:runaway") for b in boards))
        again = guard_cli("quarantine", "release", "user:runaway", "--redis", redis_server.url)
        assert again.returncode == 1 and "not quarantined" in again.stderr
    finally:
        for board in boards:
            await board.close()


async def test_repeat_quarantine_escalates_and_periodic_check_catches_up(redis_server: RedisServer) -> None:  # noqa: F811
    """A second strike doubles the TTL; a replica that missed the message learns it from its poll."""
    board = QuarantineBoard(Gateway(settings(redis_server.url)))
    first = await board.quarantine("user:x", tenant="t", ttl=10)
    await board.release("user:x")
    second = await board.quarantine("user:x", tenant="t", ttl=10)
    assert (first.level, second.level) == (1, 2)
    assert second.until - second.since == pytest.approx(2 * (first.until - first.since))
    late = QuarantineBoard(Gateway(settings(redis_server.url)), check_interval=0.1)
    await late.start()
    try:
        assert await eventually(lambda: late.is_quarantined("user:x") is not None)
    finally:
        await late.close()


def write_policy(directory: Path, rate: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / "team-a.yaml").write_text(f"""apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata:
  name: team-a
spec:
  subjects:
    - {{kind: Group, name: team-a}}
  rules:
    - name: reads
      verbs: [get, list, watch]
      quota: {{rate: {rate}, burst: 40}}
""")


async def test_bundles_push_live_update_tamper_and_disk_restart(redis_server: RedisServer,  # noqa: F811
                                                                tmp_path: Path) -> None:
    """A pushed bundle goes live on every replica; a tampered one is refused and the last good one
    stays; a replica restarting while Redis is down applies the copy it kept on disk."""
    assert guard_cli("policy", "keygen", str(tmp_path / "signing")).returncode == 0
    public = bundles.load_public_key(tmp_path / "signing.pub")
    live: list[dict[int, int]] = [{} for _ in range(3)]
    watchers = [bundles.BundleWatcher(Gateway(settings(redis_server.url)), public,
                                      lambda b, i=i: live[i].__setitem__(0, b.version),
                                      bundle_dir=tmp_path / f"replica{i}", poll_interval=30.0)
                for i in range(3)]
    for watcher in watchers:
        await watcher.start()
    policies = tmp_path / "policies"
    try:
        await asyncio.sleep(0.2)
        for version, rate in ((1, "20/s"), (2, "30/s")):
            write_policy(policies, rate)
            await push(redis_server.url, policies, tmp_path / "signing.key")
            assert await eventually(lambda v=version: all(w.current and w.current.version == v
                                                          for w in watchers))
        assert all(state[0] == 2 for state in live)
        shown = guard_cli("policy", "show", "--redis", redis_server.url, "--public-key",
                          str(tmp_path / "signing.pub"))
        assert shown.returncode == 0 and "version 2" in shown.stdout and "valid" in shown.stdout
        gateway = Gateway(settings(redis_server.url))
        payload, _ = await bundles.fetch(gateway) or (b"", b"")
        forged = payload.replace(b'"version":2', b'"version":3').replace(b"30/s", b"9000/s")
        await gateway.call("HSET", "guard:{bundles}:live", "payload", forged)
        await gateway.call("PUBLISH", bundles.channel(gateway), "3")
        assert await eventually(lambda: all(w.stats.refused >= 1 for w in watchers))
        assert all(w.current is not None and w.current.version == 2 for w in watchers)
        await gateway.close()
    finally:
        for watcher in watchers:
            await watcher.close()
    redis_server.kill()
    applied: list[int] = []
    restarted = bundles.BundleWatcher(Gateway(settings(redis_server.url)), public,
                                      lambda b: applied.append(b.version), bundle_dir=tmp_path / "replica0")
    await restarted.start()
    await restarted.close()
    assert applied == [2] and "30/s" in restarted.current.files["team-a.yaml"]  # type: ignore[union-attr]


async def push(url: str, directory: Path, key: Path) -> None:
    result = guard_cli("policy", "push", str(directory), "--redis", url, "--signing-key", str(key),
                       "--public-key", str(key.with_suffix(".pub")))
    assert result.returncode == 0, result.stderr


def test_push_refuses_invalid_policies(redis_server: RedisServer, tmp_path: Path) -> None:  # noqa: F811
    """An invalid policy directory is reported with file and field, and nothing is published."""
    assert guard_cli("policy", "keygen", str(tmp_path / "k")).returncode == 0
    write_policy(tmp_path / "bad", "fast")
    result = guard_cli("policy", "push", str(tmp_path / "bad"), "--redis", redis_server.url,
                       "--signing-key", str(tmp_path / "k.key"), "--public-key", str(tmp_path / "k.pub"))
    assert result.returncode == 1 and "team-a.yaml" in result.stderr and "rate" in result.stderr
    shown = guard_cli("policy", "show", "--redis", redis_server.url)
    assert shown.returncode == 1 and "no policy bundle" in shown.stderr


def test_push_with_the_wrong_key_leaves_the_live_bundle_alone(
        redis_server: RedisServer, tmp_path: Path) -> None:  # noqa: F811
    """A bundle signed with a key the fleet does not trust is refused before it reaches Redis (it
    used to replace the good bundle, which every replica then refused); so is a push with a config
    naming no public key. The good bundle stays live."""
    for name in ("fleet", "stray"):
        assert guard_cli("policy", "keygen", str(tmp_path / name)).returncode == 0
    write_policy(tmp_path / "good", "5/s")
    common = ("policy", "push", str(tmp_path / "good"), "--redis", redis_server.url)
    good = guard_cli(*common, "--signing-key", str(tmp_path / "fleet.key"), "--public-key",
                     str(tmp_path / "fleet.pub"))
    assert good.returncode == 0, good.stderr
    wrong = guard_cli(*common, "--signing-key", str(tmp_path / "stray.key"), "--public-key",
                      str(tmp_path / "fleet.pub"))
    assert wrong.returncode == 1 and "does not match the fleet's public key" in wrong.stderr
    config = tmp_path / "guard.yaml"
    config.write_text(f"listen: 127.0.0.1:0\nclusters: [{{name: d, server: 'http://a:1', token: t}}]\n"
                      f"redis: {{url: '{redis_server.url}', publicKey: {tmp_path / 'fleet.pub'}}}\n")
    stray = guard_cli(*common, "--signing-key", str(tmp_path / "stray.key"), "--config", str(config))
    assert stray.returncode == 1
    config.write_text("listen: 127.0.0.1:0\nclusters: [{name: d, server: 'http://a:1', token: t}]\n")
    unnamed = guard_cli(*common, "--signing-key", str(tmp_path / "fleet.key"), "--config", str(config))
    assert unnamed.returncode == 1 and "redis.publicKey is not set" in unnamed.stderr
    keyless = guard_cli(*common, "--signing-key", str(tmp_path / "fleet.key"))
    assert keyless.returncode == 2  # --public-key or --config is required
    shown = guard_cli("policy", "show", "--redis", redis_server.url, "--public-key",
                      str(tmp_path / "fleet.pub"))
    assert shown.returncode == 0 and "version 1 " in shown.stdout and "signature valid" in shown.stdout


async def test_cluster_keys_share_a_slot_and_leasing_works(redis_cluster: RedisClusterServers) -> None:  # noqa: F811
    """On a 3-master Cluster a tenant's bucket keys share one slot, and leases are granted."""
    store = await build_store(settings(redis_cluster.url, cluster=True), replica_id="r", cluster="c")
    await store.start()
    limit = Limit(rate=50, burst=10)
    admitted = 0
    try:
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            for key in ("alpha:reads:x", "alpha:writes:y", "beta:reads:z"):
                admitted += store.take(key, limit).allowed
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - started
        slots = {k: redis_cluster.nodes[0].cli("CLUSTER", "KEYSLOT", s.redis_key).strip()
                 for k, s in store._keys.items()}
    finally:
        await store.close()
    assert slots["alpha:reads:x"] == slots["alpha:writes:y"]
    assert store.stats.granted > 0 and store.stats.lease_failures == 0
    assert 3 * 50 * 0.8 <= admitted <= 3 * (10 + 50 * elapsed + 1)
