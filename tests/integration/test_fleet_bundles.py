"""Bundle watchers on a real Redis and a real 3-master Redis Cluster, with a 60 s poll: a push
reaches every watcher by its notification alone, and a Redis that lost the bundle gets a replica's
verified copy back, with the version counter, so the next push is numbered above it and applied."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from guard.federation import bundles
from guard.federation.config import parse_redis
from guard.federation.connection import Gateway
from tests.redis_servers import RedisClusterServers, RedisServer, redis_cluster, redis_server  # noqa: F401

pytestmark = pytest.mark.redis
POLICY = """apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {{name: team-a}}
spec:
  subjects: [{{kind: Group, name: team-a}}]
  rules:
    - name: reads
      quota: {{rate: {rate}}}
"""


async def _until(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        await asyncio.sleep(0.01)
    return False


@pytest.mark.parametrize("kind", ["single", "cluster"])
async def test_push_by_notification_and_restore_after_loss(kind: str, tmp_path: Path,
                                                          request: pytest.FixtureRequest) -> None:
    server: RedisServer | RedisClusterServers = request.getfixturevalue(
        "redis_server" if kind == "single" else "redis_cluster")
    parsed, problems = parse_redis({"url": server.url, "cluster": kind == "cluster",
                                    "keyPrefix": f"t{time.monotonic_ns()}:"}, "redis")
    assert problems == []
    settings = dataclasses.replace(parsed, timeout=1.0)
    bundles.keygen(tmp_path / "k.key", tmp_path / "k.pub")
    key, public = bundles.load_private_key(tmp_path / "k.key"), bundles.load_public_key(tmp_path / "k.pub")
    gateways = [Gateway(settings) for _ in range(3)]
    watchers = [bundles.BundleWatcher(g, public, lambda b: None, poll_interval=60.0) for g in gateways]
    pusher = Gateway(settings)
    for watcher in watchers:
        await watcher.start()
    try:
        assert await _until(lambda: all(w.stats.subscriptions >= 1 for w in watchers))
        await bundles.publish(pusher, {"team-a.yaml": POLICY.format(rate="10/s")}, key)
        assert await _until(lambda: all(w.current is not None and w.current.version == 1 for w in watchers))
        assert [w.stats.notified for w in watchers] == [1, 1, 1]

        await pusher.call("DEL", pusher.key(bundles.GROUP, "live"), pusher.key(bundles.GROUP, "version"))
        assert await bundles.fetch(pusher) is None
        assert await watchers[0].check()  # what a poll or a resubscription does
        assert watchers[0].stats.restored == 1 and await bundles.fetch(pusher) is not None
        assert await watchers[1].check() and watchers[1].stats.restored == 0  # it is back: nothing to do

        pushed = await bundles.publish(pusher, {"team-a.yaml": POLICY.format(rate="20/s")}, key)
        assert pushed.version == 2
        assert await _until(lambda: all(w.current is not None and w.current.version == 2 for w in watchers))
    finally:
        for watcher, gateway in zip(watchers, gateways, strict=True):
            await watcher.close()
            await gateway.close()
        await pusher.close()
