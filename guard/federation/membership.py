"""Membership: each replica heartbeats into Redis and learns how many replicas are live.

The live count N (per cluster and for the whole fleet) sizes leases (burst / 2N) and the
fallback share (rate / N). While Redis cannot be reached N stays frozen at its last known value:
it must never shrink during an outage, or a partition would inflate every replica's share; after
one, it shrinks only as fast as dead replicas expire (three heartbeats).
This module never raises into its caller; a failed heartbeat only leaves N frozen.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from guard.federation import background
from guard.federation.connection import FederationError, Gateway

log = logging.getLogger(__name__)

GROUP = "members"  # hash tag shared by the membership sets, so one call covers both


@dataclass(frozen=True)
class LiveCount:
    cluster: int
    fleet: int


class Membership:
    """Heartbeats every `interval` seconds; `count` is the last known live count (at least 1)."""

    def __init__(self, gateway: Gateway, *, replica_id: str, cluster: str,
                 interval: float) -> None:
        self._gateway = gateway
        self.replica_id = replica_id
        self.cluster = cluster
        self.interval = interval
        self.count = LiveCount(1, 1)
        self.fresh = False  # True once a heartbeat succeeded
        self._recent: deque[LiveCount] = deque(maxlen=3)  # a replica is live for 3 heartbeats
        self._task: asyncio.Task[None] | None = None

    async def beat(self) -> bool:
        """One heartbeat; True when it reached Redis and `count` was updated."""
        keys = [self._gateway.key(GROUP, "cluster", self.cluster), self._gateway.key(GROUP, "fleet")]
        ttl_ms = int(self.interval * 3000)
        try:
            counts = await self._gateway.function("heartbeat", keys, [self.replica_id, ttl_ms])
        except FederationError:
            return False
        self._recent.append(LiveCount(max(1, int(counts[0])), max(1, int(counts[1]))))
        # N may grow at once but shrinks only once every beat within a replica's TTL agrees: a
        # Redis restarted empty first counts only the replicas that beat since, and a share of
        # rate/N taken from that count would over-admit.
        self.count = LiveCount(max(c.cluster for c in self._recent), max(c.fleet for c in self._recent))
        self.fresh = True
        return True

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="guard-membership")

    async def _run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.interval)

    async def leave(self) -> None:
        """Stop heartbeating and remove this replica, so the others' N drops at once."""
        if self._task is not None:
            await background.stop([self._task])
            self._task = None
        for key in (self._gateway.key(GROUP, "cluster", self.cluster), self._gateway.key(GROUP, "fleet")):
            try:
                await self._gateway.call("ZREM", key, self.replica_id)
            except FederationError:
                return
