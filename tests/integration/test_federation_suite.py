"""The QuotaStore behaviour suite, run on the embedded store and on RedisQuotaStore over real Redis."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from guard.admission.embedded import EmbeddedStore
from guard.admission.store import Limit, QuotaStore
from guard.federation.config import parse_redis
from guard.federation.leases import build_store
from tests.redis_servers import redis_server  # noqa: F401

pytestmark = pytest.mark.redis


@pytest.fixture(params=["embedded", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[QuotaStore]:
    if request.param == "embedded":
        built: QuotaStore = EmbeddedStore()
    else:
        server = request.getfixturevalue("redis_server")
        settings, _ = parse_redis(server.url, "redis")
        built = await build_store(settings, replica_id="suite", cluster="c")
    await built.start()
    await built.start()  # idempotent
    yield built
    await built.close()


async def flood(store: QuotaStore, key: str, limit: Limit, seconds: float, per_step: int = 3) -> int:
    admitted = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        admitted += sum(store.take(key, limit).allowed for _ in range(per_step))
        await asyncio.sleep(0.005)
    return admitted


async def test_flood_admits_at_most_burst_plus_rate(store: QuotaStore) -> None:
    """A flood gets at most burst + rate x t, and most of it."""
    limit = Limit(rate=100, burst=20)
    started = time.monotonic()
    admitted = await flood(store, "suite:flood", limit, 1.5)
    elapsed = time.monotonic() - started
    assert admitted <= 20 + 100 * elapsed + 2  # +2: a cold replica's starter allowance
    assert admitted >= 0.8 * 100 * 1.5


async def test_rejection_says_when_to_retry(store: QuotaStore) -> None:
    """Admitted takes carry no retry_after; rejected ones a positive one; remaining never negative."""
    limit = Limit(rate=5, burst=5)
    answers = []
    for _ in range(40):
        answers.append(store.take("suite:retry", limit))
        await asyncio.sleep(0.002)
    assert any(a.allowed for a in answers) and any(not a.allowed for a in answers)
    assert all(a.retry_after == 0 for a in answers if a.allowed)
    assert all(a.retry_after > 0 for a in answers if not a.allowed)
    assert all(a.remaining >= 0 for a in answers)


async def test_keys_are_independent(store: QuotaStore) -> None:
    """Draining one bucket leaves another untouched."""
    limit = Limit(rate=2, burst=4)
    await flood(store, "suite:a", limit, 0.3)
    assert not store.take("suite:a", limit).allowed
    await asyncio.sleep(0.1)  # let the new key's first lease arrive
    assert store.take("suite:b", limit).allowed


async def test_peek_does_not_debit(store: QuotaStore) -> None:
    """Peeking a thousand times leaves the tokens to the next take."""
    limit = Limit(rate=1, burst=2)
    store.take("suite:peek", limit)
    await asyncio.sleep(0.1)
    for _ in range(1000):
        store.peek("suite:peek", limit)
    assert store.take("suite:peek", limit).allowed


async def test_cost_is_weighted(store: QuotaStore) -> None:
    """Takes of cost 5 use five tokens each: a burst of 10 at 1/s admits one or two within 0.6 s."""
    limit = Limit(rate=1, burst=10)
    admitted = 0
    for _ in range(30):
        admitted += store.take("suite:cost", limit, 5.0).allowed
        await asyncio.sleep(0.02)
    assert 1 <= admitted <= 2
