"""Runaway quarantine: isolate, fleet-wide, a client whose rejections exceed its policy's threshold.

The admission controller calls two synchronous methods on the request path: `is_quarantined`
(answered from a local cache) and `report_rejection`. A rejection counts twice: in a bounded local
sliding window (crossing the threshold on one replica quarantines at once) and in a per-client tally
sent to Redis once per `flush_interval` in one batched call, where the fleet's counts add up, so a
client spread over many replicas crosses the threshold too. Redis holds the entries with their
expiry and a strike count that doubles the TTL on each repeat; a pub/sub message tells every
replica at once, and a periodic full read (every second) repairs missed messages. The request path
never awaits Redis here, and a Redis failure only leaves the cache as it was.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from guard.federation import background
from guard.federation.connection import FederationError, Gateway
from guard.policy.model import Quarantine

log = logging.getLogger(__name__)

GROUP = "quarantine"
ESCALATION_CAP = 16  # the longest quarantine is 16 x the policy's ttl
STRIKE_MEMORY = 24 * 3600.0  # seconds a past quarantine still counts as a strike
TALLY_LIMIT = 10_000  # clients whose unsent rejections are kept while Redis is unreachable


@dataclass
class QuarantineStats:
    """Counters for /metrics: entries learnt and dropped, and the batched rejection tallies."""

    quarantined: int = 0
    released: int = 0
    tally_calls: int = 0
    tally_failures: int = 0
    rejections_sent: int = 0


@dataclass
class _Tally:
    count: int
    policy: Quarantine
    tenant: str


@dataclass(frozen=True)
class QuarantineEntry:
    """A quarantined client. Times are Redis's clock, in seconds since the epoch."""

    client: str
    policy: str
    level: int
    since: float
    until: float

    @classmethod
    def from_json(cls, raw: str | bytes) -> QuarantineEntry:
        data = json.loads(raw)
        return cls(str(data["client"]), str(data["policy"]), int(data["level"]),
                   float(data["since"]) / 1000, float(data["until"]) / 1000)


class QuarantineBoard:
    """This replica's view of the fleet's quarantine list, and its door to change it."""

    def __init__(self, gateway: Gateway, *, clock: Callable[[], float] = time.time,
                 check_interval: float = 1.0, flush_interval: float = 0.2) -> None:
        self._gateway = gateway
        self._clock = clock
        self.check_interval = check_interval
        self.flush_interval = flush_interval
        self.stats = QuarantineStats()
        self._tallies: dict[str, _Tally] = {}
        self.channel = f"{gateway.settings.key_prefix}quarantine"
        self._entries: dict[str, QuarantineEntry] = {}
        self._windows: dict[str, deque[float]] = {}
        self._pending: set[str] = set()
        self._skew = 0.0  # Redis clock minus ours, learned at each full read
        self._tasks: list[asyncio.Task[Any]] = []
        self._escalations: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()  # set once the subscription is live

    @property
    def active(self) -> int:
        """How many clients this replica currently treats as quarantined."""
        now = self._clock() + self._skew
        return sum(1 for e in self._entries.values() if e.until > now)

    def counters(self) -> dict[str, int]:
        """Counters for `GuardMetrics.add_counters(board.counters, "guard_quarantine", ...)`."""
        return {**vars(self.stats), "active": self.active}

    def is_quarantined(self, client_key: str) -> QuarantineEntry | None:
        """The live entry for `client_key`, from the local cache (no Redis call)."""
        entry = self._entries.get(client_key)
        if entry is not None and entry.until <= self._clock() + self._skew:
            return None
        return entry

    def report_rejection(self, client_key: str, policy: Quarantine, *, tenant: str = "") -> bool:
        """Count one rejection; True when it crossed `policy.threshold` within `policy.window`
        and a fleet-wide quarantine was started."""
        self._count(client_key, policy, tenant)
        now = self._clock()
        window = self._windows.get(client_key)
        if window is None or window.maxlen != policy.threshold:
            window = self._windows[client_key] = deque(maxlen=max(1, policy.threshold))
        window.append(now)
        if len(window) < (window.maxlen or 1) or now - window[0] > policy.window:
            return False
        if client_key in self._pending or self.is_quarantined(client_key) is not None:
            return False
        self._pending.add(client_key)
        self._tallies.pop(client_key, None)  # being quarantined now; Redis need not count these
        window.clear()
        task = asyncio.get_running_loop().create_task(self._escalate(client_key, policy, tenant))
        self._escalations.add(task)  # keep a reference so the task is not collected mid-flight
        task.add_done_callback(self._escalations.discard)
        return True

    def _count(self, client_key: str, policy: Quarantine, tenant: str) -> None:
        tally = self._tallies.get(client_key)
        if tally is not None:
            tally.count += 1
            tally.policy = policy
        elif len(self._tallies) < TALLY_LIMIT:
            self._tallies[client_key] = _Tally(1, policy, tenant)

    async def flush(self) -> list[QuarantineEntry]:
        """Send this replica's rejection tallies in one call; Redis quarantines every client
        whose fleet-wide count crossed its threshold. Unsent tallies are kept for the next try."""
        tallies, self._tallies = self._tallies, {}
        if not tallies:
            return []
        keys = [self._gateway.key(GROUP, "entries"), self._gateway.key(GROUP, "strikes")]
        args: list[object] = [int(STRIKE_MEMORY * 1000), self.channel, ESCALATION_CAP]
        for client, tally in tallies.items():
            keys.append(self._gateway.key(GROUP, "rejections", client))
            q = tally.policy
            args += [client, tally.tenant, tally.count, q.threshold, max(1, int(q.window * 1000)),
                     max(1, int(q.ttl * 1000))]
        self.stats.tally_calls += 1
        try:
            reply = await self._gateway.function("rejections", keys, args)
        except FederationError:
            self.stats.tally_failures += 1
            for client, tally in tallies.items():
                self._tallies.setdefault(client, tally)
            return []
        self.stats.rejections_sent += sum(t.count for t in tallies.values())
        entries = [QuarantineEntry.from_json(raw) for raw in reply]
        for entry in entries:
            self._learn(entry)
        return entries

    def _learn(self, entry: QuarantineEntry) -> None:
        if self.is_quarantined(entry.client) is None:
            self.stats.quarantined += 1
            log.warning("a client of tenant %s is quarantined fleet-wide at level %d for %.0fs",
                        entry.policy or "?", entry.level, entry.until - entry.since)
        self._entries[entry.client] = entry

    def _forget(self, client: str) -> None:
        if self._entries.pop(client, None) is not None:
            self.stats.released += 1
            log.warning("a quarantined client was released")

    async def _escalate(self, client: str, policy: Quarantine, tenant: str) -> None:
        try:
            await self.quarantine(client, tenant=tenant, ttl=policy.ttl)
        except FederationError as e:
            log.warning("could not quarantine a runaway client of %s: %s", tenant or "?", e)
        finally:
            self._pending.discard(client)

    async def quarantine(self, client: str, *, tenant: str, ttl: float) -> QuarantineEntry:
        """Quarantine `client` fleet-wide; a repeat within a day doubles the TTL (capped)."""
        keys = [self._gateway.key(GROUP, "entries"), self._gateway.key(GROUP, "strikes")]
        base_ms = int(ttl * 1000)
        raw = await self._gateway.function("quarantine", keys, [
            client, tenant, base_ms, base_ms * ESCALATION_CAP, int(STRIKE_MEMORY * 1000), self.channel])
        entry = QuarantineEntry.from_json(raw)
        self._learn(entry)
        return entry

    async def release(self, client: str) -> bool:
        """End `client`'s quarantine everywhere (its strikes are kept for escalation)."""
        removed = await self._gateway.call("HDEL", self._gateway.key(GROUP, "entries"), client)
        await self._gateway.call("PUBLISH", self.channel, f"release {client}")
        self._forget(client)
        return bool(removed)

    async def entries(self) -> list[QuarantineEntry]:
        """Every live entry, read from Redis (expired ones are dropped there)."""
        reply = await self._gateway.function("quarantined", [self._gateway.key(GROUP, "entries")], [])
        self._skew = float(reply[0]) / 1000 - self._clock()
        return [QuarantineEntry.from_json(raw) for raw in reply[1:]]

    async def refresh(self) -> None:
        """Replace the cache by Redis's list; keeps the cache when Redis cannot be read."""
        try:
            live = await self.entries()
        except FederationError:
            return
        fresh = {e.client: e for e in live}
        for entry in live:
            self._learn(entry)
        for client in [c for c in self._entries if c not in fresh]:
            self._forget(client)
        self._forget_quiet_windows()

    def _forget_quiet_windows(self) -> None:
        now = self._clock()
        quiet = [c for c, w in self._windows.items() if not w or now - w[-1] > 60.0]
        for client in quiet:
            del self._windows[client]

    def apply_message(self, data: str) -> None:
        """Apply one pub/sub message: `add {json}` or `release CLIENT`."""
        verb, _, rest = data.partition(" ")
        if verb == "add":
            self._learn(QuarantineEntry.from_json(rest))
        elif verb == "release":
            self._forget(rest)

    async def _poll(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.check_interval)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception:  # the tally loop must outlive any bug in one batch
                log.exception("quarantine tally failed")

    async def _listen(self) -> None:
        while True:
            pubsub = self._gateway.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self.ready.set()
                while True:
                    message = await pubsub.get_message(timeout=self.check_interval)
                    if message and message.get("type") == "message":
                        self.apply_message(_text(message["data"]))
            except Exception as e:  # redis-py raises many kinds; reconnect after any of them
                log.debug("quarantine subscription lost: %s", type(e).__name__)
            finally:
                await _close_quietly(pubsub)
            await asyncio.sleep(self.check_interval)

    async def start(self) -> None:
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self._poll(), name="guard-quarantine-poll"))
            self._tasks.append(asyncio.create_task(self._listen(), name="guard-quarantine-listen"))
            self._tasks.append(asyncio.create_task(self._flush_loop(), name="guard-quarantine-tally"))

    async def close(self) -> None:
        tasks = [*self._tasks, *self._escalations]
        await background.stop(tasks)
        self._tasks.clear()


def _text(data: object) -> str:
    return data.decode() if isinstance(data, bytes) else str(data)


async def _close_quietly(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except Exception:  # closing a broken connection may raise anything; nothing to do about it
        pass
