"""`RedisQuotaStore`: global token buckets in Redis, spent locally through pre-debited leases.

The request path (`take`, `peek`) is synchronous and never touches Redis: it spends tokens this
replica already debited from the global GCRA bucket. A background task refills, once per tick,
every key below its watermark in one batched call per Redis slot. When Redis fails, a circuit
breaker stops all calls; remaining leases are spent until they lapse, then each key follows its
`Limit.fail_mode` (`local`: rate/N with N frozen, `open`, `closed`) until a probe succeeds.
It must never await on the request path and never let a Redis error escape `take`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.crc import key_slot

from guard.admission.store import Limit, Take
from guard.federation import background
from guard.federation.breaker import Breaker, BreakerConfig, State
from guard.federation.config import RedisSettings
from guard.federation.connection import FederationError, Gateway
from guard.federation.lease_state import FallbackBucket, KeyState
from guard.federation.membership import Membership, membership_for

log = logging.getLogger(__name__)

RTT_SMOOTHING = 0.2
IDLE_FORGET = 30.0  # seconds without a take after which a key's local state is dropped


@dataclass
class LeaseStats:
    """Counters for metrics and tests."""

    lease_calls: int = 0
    leased_keys: int = 0
    """Keys asked for over all lease calls (one call carries every key of a slot wanting tokens)."""
    lease_failures: int = 0
    granted: int = 0
    fallback_admitted: int = 0
    open_admitted: int = 0
    closed_rejected: int = 0
    transitions: int = 0


def bucket_tag(key: str) -> str:
    """The hash tag of an admission key: an explicit `{tag}`, else the part before the first `:`
    (the tenant, by the admission step's convention), so a tenant's buckets share one slot."""
    start = key.find("{")
    end = key.find("}", start + 1)
    if start >= 0 and end > start + 1:
        return key[start + 1:end]
    return key.split(":", 1)[0]


class RedisQuotaStore:
    """A `QuotaStore` whose buckets are global across every replica sharing one Redis."""

    def __init__(self, gateway: Gateway, membership: Membership, *, tick: float, lease_ttl: float,
                 clock: Callable[[], float] = time.monotonic, breaker: Breaker | None = None,
                 on_transition: Callable[[str, str], None] | None = None) -> None:
        self._gateway = gateway
        self.membership = membership
        self._tick = tick
        self._lease_ttl = lease_ttl
        self._clock = clock
        self._keys: dict[str, KeyState] = {}
        self._rtt = gateway.settings.timeout / 5
        self._on_transition = on_transition
        self.breaker = breaker or Breaker(clock, config=BreakerConfig(), jitter=random.random,
                                          on_change=self._changed)
        self.stats = LeaseStats()
        self._task: asyncio.Task[None] | None = None

    @property
    def degraded(self) -> bool:
        """True while Redis is considered down and keys follow their fail mode."""
        return self.breaker.state != "closed"

    def counters(self) -> dict[str, int]:
        """Counters for `GuardMetrics.add_counters(store.counters, "guard_federation", ...)`."""
        values = dict(vars(self.stats))
        values["degraded"] = int(self.degraded)
        values["live_replicas"] = self.live
        return values

    @property
    def live(self) -> int:
        return self.membership.count.fleet

    def snapshot(self) -> list[dict[str, object]]:
        """Each key's local lease: spendable tokens, when they lapse, the demand and the fallback."""
        now = self._clock()
        return [{"key": key, "tokens": round(s.tokens, 3), "expiresIn": round(max(0.0, s.expires - now), 3),
                 "demand": round(s.demand, 3), "fallback": s.fallback is not None}
                for key, s in self._keys.items()]

    def take(self, key: str, limit: Limit, cost: float = 1.0) -> Take:
        now = self._clock()
        state = self._state(key, limit, now)
        if state.spend(now, cost):
            return state.state(now, True, cost, self.live)
        if self.degraded or state.fallback is not None:
            return self._fall_back(state, now, cost)
        if self._borrow(state, now, cost):
            return state.state(now, True, cost, self.live)
        return state.state(now, False, cost, self.live)

    def _borrow(self, state: KeyState, now: float, cost: float) -> bool:
        """Between two leases (the last one spent or lapsed, the next not back yet), admit on
        credit while Redis's last reply showed room in the global bucket: at most a starter
        allowance is owed at once, and the next grants pay it back, so the fleet's total stays
        within rate x time + burst. Without this a quiet key would see 429s under its quota."""
        if now < state.next_ask or state.owed + cost > self._allowance(state.limit):
            return False
        interval = 1.0 / state.limit.rate
        room = (state.limit.burst * interval - max(0.0, state.ahead - (now - state.replied))) / interval
        if room < state.owed + cost + self.live:  # leave the other replicas' share alone
            return False
        state.debt += cost
        return True

    def _allowance(self, limit: Limit) -> float:
        return max(1.0, min(limit.burst, limit.rate * self._tick) / self.live)

    def peek(self, key: str, limit: Limit) -> Take:
        now = self._clock()
        state = self._keys.get(key)
        if state is None:
            return Take(True, limit.burst, 0.0, 0.0)
        tokens = state.tokens if now < state.expires else 0.0
        return state.state(now, tokens >= 1.0, 1.0, self.live)

    def _state(self, key: str, limit: Limit, now: float) -> KeyState:
        state = self._keys.get(key)
        if state is None:
            state = KeyState(redis_key=self._gateway.key(bucket_tag(key), "bucket", key), limit=limit,
                             sampled=now, last_used=now)
            if not self.degraded:
                self._give_starter(state, now)
            self._keys[key] = state
        elif state.limit != limit:
            state.limit = limit
        return state

    def _give_starter(self, state: KeyState, now: float) -> None:
        """A tenant new to this replica spends a small allowance, paid back by its first lease."""
        starter = self._allowance(state.limit)
        state.tokens = state.credit = starter
        state.expires = now + self._lease_ttl

    def _fall_back(self, state: KeyState, now: float, cost: float) -> Take:
        limit = state.limit
        if limit.fail_mode == "open":
            self.stats.open_admitted += 1
            return Take(True, 0.0, 0.0, 0.0)
        if limit.fail_mode == "closed":
            self.stats.closed_rejected += 1
            return Take(False, 0.0, self.breaker_wait(), 0.0)
        live = self.live  # frozen while Redis is down: a partition must not inflate shares
        if state.fallback is None:
            # A key that was leasing hands over with an empty bucket, so the outage adds no
            # burst; one this replica never leased (new during the outage, or forgotten while
            # idle) starts full, as its share of the global bucket would be: else a client
            # under its quota is refused its first request.
            start = 0.0 if state.replied else limit.burst / live
            state.fallback = FallbackBucket(tokens=start, stamp=now)
        answer = state.fallback.take(now, limit.rate / live, max(cost, limit.burst / live), cost)
        if answer.allowed:
            self.stats.fallback_admitted += 1
        return answer

    def breaker_wait(self) -> float:
        return max(1.0, self._tick)

    async def refill_once(self) -> None:
        """One tick: ask Redis for tokens for every key below its watermark."""
        now = self._clock()
        live = self.live
        batch: list[tuple[KeyState, int]] = []
        for key, state in list(self._keys.items()):
            state.sample_demand(now)
            if now - state.last_used > IDLE_FORGET or (not self.degraded and self._settled(state, now)):
                del self._keys[key]
                continue
            want = state.want(now, live, self._rtt, self._lease_ttl)
            if want > 0:
                batch.append((state, want))
        if not batch or not self.breaker.allow():
            return
        # On a Redis Cluster each slot is one call: at most half the pool at once, since a full
        # Cluster pool fails the call rather than wait (and tripped the breaker under the quota).
        limit = asyncio.Semaphore(max(1, self._gateway.settings.pool_size // 2))

        async def bounded(group: list[tuple[KeyState, int]]) -> None:
            async with limit:
                await self._lease(group, live)

        await asyncio.gather(*(bounded(group) for group in self._by_slot(batch)))

    def _by_slot(self, batch: list[tuple[KeyState, int]]) -> list[list[tuple[KeyState, int]]]:
        if not self._gateway.settings.cluster:
            return [batch]
        groups: dict[int, list[tuple[KeyState, int]]] = {}
        for item in batch:
            groups.setdefault(key_slot(item[0].redis_key.encode()), []).append(item)
        return list(groups.values())

    def _settled(self, state: KeyState, now: float) -> bool:
        """Idle for two lease periods with nothing owed: forget the key rather than keep leasing
        tokens that lapse unspent (they would starve the other replicas of a low-rate quota);
        its next take starts on a fresh starter allowance, paid back by its first lease."""
        return (now - state.last_used > 2 * self._lease_ttl and now >= state.expires
                and state.debt <= 0 and state.fallback is None)

    async def _lease(self, group: list[tuple[KeyState, int]], live: int) -> None:
        args: list[int] = []
        for state, want in group:
            interval = 1_000_000 / state.limit.rate
            args += [round(interval), round(interval * state.limit.burst), want]
        started = self._clock()
        self.stats.lease_calls += 1
        self.stats.leased_keys += len(group)
        try:
            reply = await self._gateway.function("lease", [s.redis_key for s, _ in group], args)
        except FederationError as e:
            self.stats.lease_failures += 1
            log.debug("lease call failed: %s", e)
            self.breaker.failure()
            return
        now = self._clock()
        self._rtt += RTT_SMOOTHING * ((now - started) - self._rtt)
        self.breaker.success()
        for i, (state, want) in enumerate(group):
            granted, ahead_us = int(reply[2 * i]), int(reply[2 * i + 1])
            self.stats.granted += granted
            state.grant(now, want, granted, ahead_us / 1e6, live=live, lease_ttl=self._lease_ttl)

    def _changed(self, old: State, new: State) -> None:
        self.stats.transitions += 1
        if new == "open" and old == "closed":  # a failed half-open probe is no news
            log.warning("%s; buckets follow their failMode (N frozen at %d)",
                        self._gateway.last_error or "redis unreachable", self.live)
        elif new == "closed":
            log.warning("redis reachable again: leasing resumed")
        if self._on_transition is not None:
            self._on_transition(old, new)

    async def _run(self) -> None:
        while True:
            try:
                await self.refill_once()
            except Exception:  # the refill loop must outlive any bug in one tick
                log.exception("lease refill tick failed")
            await asyncio.sleep(self._tick)

    async def start(self) -> None:
        if self._task is not None:
            return
        if not await self.membership.beat():
            # Serve at once on the fail modes rather than rejecting until three lease calls fail.
            self.breaker.trip()
        await self.membership.start()
        self._task = asyncio.create_task(self._run(), name="guard-leases")

    async def close(self) -> None:
        if self._task is not None:
            await background.stop([self._task])
            self._task = None
        await self.membership.leave()
        await self._gateway.close()


async def build_store(settings: RedisSettings, *, replica_id: str, cluster: str) -> RedisQuotaStore:
    """The store for one replica; call `start()` (e.g. in a cleanup_ctx) and `close()` at the end."""
    gateway = Gateway(settings)
    membership = membership_for(gateway, settings, replica_id=replica_id, cluster=cluster)
    return RedisQuotaStore(gateway, membership, tick=settings.tick, lease_ttl=settings.lease_ttl)
