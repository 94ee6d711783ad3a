"""Cluster health shared through Redis, so the fleet sheds a dead api-server and ramps a recovered
one together instead of each replica finding out alone.

Every `interval` seconds (the membership heartbeat), one call per cluster (`health.lua`, its key
hash-tagged per cluster) writes this replica's view of each endpoint — circuit state, consecutive
failures, requests in flight, how long ago its circuit last opened, last recovered and last heard
the endpoint answer — and reads every live replica's; Redis stamps each view with its own clock and
drops views older than three intervals. `guard.routing.shared.fold` merges the others' views into
each endpoint's breaker. Calls pass the lease store's breaker: while Redis is unreachable none is
made and every replica decides on its own view (`shared.forget`). The request path never waits
on this: it reads what the last fold left. It must never raise into its caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from guard.federation import background
from guard.federation.breaker import Breaker
from guard.federation.connection import FederationError, Gateway, RedisFailed, lost_script
from guard.routing.breaker import EndpointHealth, State
from guard.routing.shared import View, fold, forget

log = logging.getLogger(__name__)

LIVE_FOR = 3
"""Intervals a view stays live after it was published (as a heartbeat does)."""
STATES: frozenset[str] = frozenset({"closed", "open", "half-open"})


class SharedEndpoint(Protocol):
    """What this module reads of an upstream endpoint (guard.upstream.endpoints.Endpoint)."""

    @property
    def url(self) -> str: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def health(self) -> EndpointHealth: ...


Source = Callable[[], Iterable[tuple[str, Sequence[SharedEndpoint]]]]
"""Returns (cluster name, its endpoints) for every cluster of the running settings."""


@dataclass
class HealthStats:
    """Counters for /metrics."""

    calls: int = 0
    failures: int = 0
    loads: int = 0
    """Exchanges that sent the whole script because Redis did not have it (at start, after a restart)."""


def script() -> str:
    return resources.files("guard.federation").joinpath("health.lua").read_text()


class FleetHealth:
    """This replica's side of the shared cluster health: publish, read, fold, on a slow tick."""

    def __init__(self, gateway: Gateway, *, replica: str, interval: float, breaker: Breaker,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._gateway = gateway
        self.replica = replica
        self.interval = interval
        self._breaker = breaker
        self._clock = clock
        self._script = script()
        self._sha = hashlib.sha1(self._script.encode()).hexdigest()  # Redis names scripts by SHA1
        self._source: Source = list
        self._published: set[str] = set()
        self.stats = HealthStats()
        self._task: asyncio.Task[None] | None = None

    def watch(self, source: Source) -> None:
        """Publish and fold the endpoints `source()` returns (it follows settings reloads)."""
        self._source = source

    def counters(self) -> dict[str, int]:
        return dict(vars(self.stats))

    async def tick(self) -> bool:
        """One exchange for every cluster; True when the fleet's views were folded in."""
        clusters = [(name, list(endpoints)) for name, endpoints in self._source()]
        if not clusters:
            return False
        if not self._breaker.allow():
            _forget(clusters)
            return False
        # At most a quarter of the pool at once: a replica fronting many clusters must not exhaust
        # it (a Redis Cluster pool fails the call rather than wait) nor starve the lease calls,
        # which take up to half.
        limit = asyncio.Semaphore(max(1, self._gateway.settings.pool_size // 4))

        async def bounded(name: str, endpoints: Sequence[SharedEndpoint]) -> Any:
            async with limit:
                return await self._exchange(name, endpoints)

        replies = await asyncio.gather(*(bounded(name, endpoints) for name, endpoints in clusters))
        if any(reply is None for reply in replies):
            self._breaker.failure()
            _forget(clusters)
            return False
        self._breaker.success()
        now = self._clock()
        for (name, endpoints), reply in zip(clusters, replies, strict=True):
            self._fold(name, endpoints, self._views(reply, now), now)
        return True

    async def _exchange(self, cluster: str, endpoints: Sequence[SharedEndpoint]) -> Any:
        """Publish this replica's view of `cluster` and read the fleet's; None when Redis failed."""
        now = self._clock()
        view = json.dumps({"e": {ep.url: _encode(ep, now) for ep in endpoints}}, separators=(",", ":"))
        ttl_ms = max(1, round(self.interval * LIVE_FOR * 1000))
        self.stats.calls += 1
        try:
            reply = await self._call(self._key(cluster), self.replica, ttl_ms, view)
        except FederationError as e:
            self.stats.failures += 1
            log.debug("cluster health exchange failed: %s", e)
            return None
        self._published.add(cluster)
        return reply

    async def _call(self, key: str, *args: Any) -> Any:
        """The health script by its SHA (EVALSHA: Redis neither receives nor hashes the script on
        every exchange); EVAL once where Redis does not have it yet, which caches it there."""
        try:
            return await self._gateway.call("EVALSHA", self._sha, 1, key, *args)
        except RedisFailed as e:
            if not lost_script(e):
                raise
            self.stats.loads += 1
            return await self._gateway.call("EVAL", self._script, 1, key, *args)

    def _views(self, reply: Any, now: float) -> dict[str, list[View]]:
        """The other replicas' views by endpoint URL, their times on this replica's clock."""
        redis_now = int(_text(reply[0]))
        views: dict[str, list[View]] = {}
        for field, value in zip(reply[1::2], reply[2::2], strict=True):
            replica = _text(field)
            if replica == self.replica:
                continue
            stamp, _, payload = _text(value).partition(" ")
            try:
                endpoints = json.loads(payload)["e"]
                base = now - max(0, redis_now - int(stamp)) / 1000
                for url, fields in endpoints.items():
                    views.setdefault(url, []).append(_decode(replica, fields, base))
            except (ValueError, KeyError, TypeError, AttributeError):
                log.debug("skipped replica %s's unreadable health view", replica)
        return views

    def _fold(self, cluster: str, endpoints: Sequence[SharedEndpoint], views: dict[str, list[View]],
              now: float) -> None:
        for ep in endpoints:
            health = ep.health
            opens, closes = health.fleet_opens, health.fleet_closes
            fold(health, views.get(ep.url, []), now, ep.in_flight)
            fleet = health.fleet
            if health.fleet_opens != opens and fleet is not None:
                log.warning("api-server %s of cluster %s: %d of %d replicas see its circuit open and none "
                            "heard it answer since: circuit open here too", ep.url, cluster, fleet.open,
                            fleet.replicas)
            elif health.fleet_closes != closes:
                log.warning("api-server %s of cluster %s answers the fleet again: circuit closed here too, "
                            "slow start with the fleet", ep.url, cluster)

    def _key(self, cluster: str) -> str:
        return self._gateway.key(f"health:{cluster}", "views")

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # the loop must outlive any bug in one tick
                log.exception("cluster health tick failed")
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="guard-fleet-health")

    async def close(self) -> None:
        """Stop, and take this replica's views out at once (the others stop counting it)."""
        if self._task is not None:
            await background.stop([self._task])
            self._task = None
        for cluster in self._published:
            try:
                await self._gateway.call("HDEL", self._key(cluster), self.replica)
            except FederationError:
                return


def _forget(clusters: Iterable[tuple[str, Sequence[SharedEndpoint]]]) -> None:
    for _, endpoints in clusters:
        for ep in endpoints:
            forget(ep.health)


def _encode(ep: SharedEndpoint, now: float) -> list[object]:
    """[state, consecutive failures, in flight, ms since opened, recovered, answered (-1: never)]."""
    h = ep.health
    return [h.state, h.consecutive, ep.in_flight, _ago(h.opened_at, now), _ago(h.closed_at, now),
            _ago(h.answered_at, now)]


def _decode(replica: str, fields: list[Any], base: float) -> View:
    state, consecutive, in_flight, opened, closed, answered = fields
    if state not in STATES:
        raise ValueError(state)
    known: State = state
    return View(known, int(consecutive), int(in_flight), _at(opened, base), _at(closed, base),
                _at(answered, base), replica)


def _ago(at: float | None, now: float) -> int:
    return -1 if at is None else max(0, round((now - at) * 1000))


def _at(ago_ms: object, base: float) -> float | None:
    ms = int(ago_ms)  # type: ignore[call-overload]
    return None if ms < 0 else base - ms / 1000


def _text(raw: bytes | str | int) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
