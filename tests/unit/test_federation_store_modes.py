"""RedisQuotaStore against a scripted Redis: leases, outage fail modes and recovery, on a fake clock."""

from __future__ import annotations

from typing import Any

from guard.admission.store import Limit
from guard.federation.config import RedisSettings
from guard.federation.connection import Gateway, RedisUnavailable
from guard.federation.leases import RedisQuotaStore
from guard.federation.membership import Membership
from tests.doubles import FakeClock


class ScriptedGateway(Gateway):
    """Grants every lease in full from an unlimited bucket, or fails while `down`."""

    def __init__(self, live: int = 4) -> None:
        super().__init__(RedisSettings(url="redis://127.0.0.1:1/0"), client=object())
        self.down = False
        self.live = live
        self.leases = 0

    async def function(self, name: str, keys: list[str], args: list[Any]) -> Any:
        if self.down:
            raise RedisUnavailable("redis unreachable: ConnectionError")
        if name == "heartbeat":
            return [self.live, self.live]
        self.leases += 1
        return [x for i in range(len(keys)) for x in (args[3 * i + 2], 1000)]

    async def call(self, *args: Any) -> Any:
        return 0

    async def close(self) -> None:
        return None


async def make_store(gateway: ScriptedGateway, clock: FakeClock) -> RedisQuotaStore:
    membership = Membership(gateway, replica_id="r1", cluster="c", interval=1.0)
    await membership.beat()
    return RedisQuotaStore(gateway, membership, tick=0.04, lease_ttl=0.25, clock=clock)


async def run_for(store: RedisQuotaStore, clock: FakeClock, key: str, limit: Limit, seconds: float,
                  per_tick: int) -> int:
    """Offer `per_tick` takes every 10 ms, refilling every 40 ms; the number admitted."""
    admitted = 0
    for step in range(int(seconds * 100)):
        clock.now += 0.01
        admitted += sum(store.take(key, limit).allowed for _ in range(per_tick))
        if step % 4 == 0:
            await store.refill_once()
    return admitted


async def test_warm_key_is_served_from_leases_in_batches() -> None:
    """Many takes cost few Redis calls: at least 10 admitted per lease call."""
    clock, gateway = FakeClock(100.0), ScriptedGateway(live=1)
    store = await make_store(gateway, clock)
    admitted = await run_for(store, clock, "t:r", Limit(rate=1000, burst=1000), 2.0, 5)
    assert admitted >= 900
    assert admitted / gateway.leases >= 10


async def test_local_fail_mode_admits_a_share_of_the_rate_with_n_frozen() -> None:
    """Redis down: after the leases lapse, admission is rate / N (N = 4 known before the outage)."""
    clock, gateway = FakeClock(100.0), ScriptedGateway(live=4)
    store = await make_store(gateway, clock)
    limit = Limit(rate=100, burst=20)
    await run_for(store, clock, "t:r", limit, 1.0, 5)
    gateway.down = True
    await run_for(store, clock, "t:r", limit, 1.0, 5)  # breaker opens, leases lapse
    assert store.degraded and store.live == 4
    admitted = await run_for(store, clock, "t:r", limit, 4.0, 5)
    assert 0.8 * 100 / 4 * 4 <= admitted <= 100 / 4 * 4 + 5


async def test_open_and_closed_fail_modes() -> None:
    """Redis down: `open` admits everything, `closed` admits nothing once leases are spent."""
    clock, gateway = FakeClock(100.0), ScriptedGateway()
    store = await make_store(gateway, clock)
    opened, closed = Limit(10, 10, "open"), Limit(10, 10, "closed")
    await run_for(store, clock, "a:r", opened, 0.5, 1)
    await run_for(store, clock, "b:r", closed, 0.5, 1)
    gateway.down = True
    await run_for(store, clock, "a:r", opened, 1.0, 1)
    await run_for(store, clock, "b:r", closed, 1.0, 1)
    assert await run_for(store, clock, "a:r", opened, 1.0, 3) == 300
    assert await run_for(store, clock, "b:r", closed, 1.0, 3) == 0


async def test_recovery_resumes_leasing_and_logs_transitions() -> None:
    """When Redis answers a probe again the breaker closes and leases flow; both changes are counted."""
    clock, gateway = FakeClock(100.0), ScriptedGateway()
    store = await make_store(gateway, clock)
    limit = Limit(rate=100, burst=20)
    gateway.down = True
    await run_for(store, clock, "t:r", limit, 1.0, 2)
    assert store.degraded
    gateway.down = False
    before = gateway.leases
    await run_for(store, clock, "t:r", limit, 3.0, 2)
    assert not store.degraded and gateway.leases > before
    assert store.stats.transitions >= 3  # closed->open, open->half-open, half-open->closed
