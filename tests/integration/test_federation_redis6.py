"""Redis 6 has no FUNCTION/FCALL: guard's lease calls fall back to EVALSHA of the same script, and
reload it when a restart wiped the script cache. A Redis 7 whose FUNCTION and FCALL commands are
renamed away answers exactly like Redis 6 ("unknown command"), so the fallback runs for real."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from guard.admission.store import Limit
from guard.federation.config import parse_redis
from guard.federation.connection import Gateway
from guard.federation.leases import RedisQuotaStore
from guard.federation.membership import Membership
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.redis
LIKE_REDIS_6 = ("--rename-command", "FUNCTION", "", "--rename-command", "FCALL", "")
QUOTA = Limit(rate=10, burst=20)


@pytest.fixture
def redis6() -> Iterator[RedisServer]:
    server = RedisServer(extra=LIKE_REDIS_6).start()
    yield server
    server.kill()


async def _beats_again(membership: Membership) -> bool:
    """The gateway notices the restart (a broken pooled connection, its breaker's probe) by itself."""
    for _ in range(100):
        if await membership.beat():
            return True
        await asyncio.sleep(0.05)
    return False


async def _drain(store: RedisQuotaStore, takes: int) -> int:
    """Lease until Redis says the bucket is empty; return how many takes were admitted."""
    admitted = 0
    for _ in range(takes):
        await store.refill_once()
        admitted += store.take("team-a:reads", QUOTA).allowed
    return admitted


async def test_leases_work_through_evalsha_when_functions_are_unknown(redis6: RedisServer) -> None:
    """A burst of 20 is granted and no more (a few tokens of refill at most), through EVALSHA;
    after a restart empties the script cache, the script is loaded again and leasing goes on."""
    settings, problems = parse_redis(redis6.url, "redis")
    assert problems == []
    gateway = Gateway(settings)
    membership = Membership(gateway, replica_id="r1", cluster="c", interval=1.0)
    try:
        assert await membership.beat()
        store = RedisQuotaStore(gateway, membership, tick=settings.tick, lease_ttl=settings.lease_ttl)
        first = await _drain(store, 60)
        assert not gateway._use_functions  # the fallback is what served the leases
        assert 20 <= first <= 24
        redis6.kill()
        redis6.start()  # same port, nothing remembered: no bucket, no script
        assert await _beats_again(membership), gateway.last_error
        again = RedisQuotaStore(gateway, membership, tick=settings.tick, lease_ttl=settings.lease_ttl)
        assert await _drain(again, 60) >= 20  # a fresh bucket's burst, leased after a reload
    finally:
        await gateway.close()
