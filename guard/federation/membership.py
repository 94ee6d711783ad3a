"""Membership: each replica heartbeats into Redis and learns how many replicas are live.

The live count N (per cluster and for the whole fleet) sizes leases (burst / 2N) and the
fallback share (rate / N). While Redis cannot be reached N stays frozen at its last known value:
it must never shrink during an outage, or a partition would inflate every replica's share; after
one, it shrinks only as fast as dead replicas expire (three heartbeats). Before the first
heartbeat N is max(`expectedReplicas`, the N remembered in `stateDir`), never a hopeful 1.
This module never raises into its caller; a failed heartbeat only leaves N frozen.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from guard.config.files import write_atomic
from guard.federation import background
from guard.federation.config import RedisSettings
from guard.federation.connection import FederationError, Gateway

log = logging.getLogger(__name__)

GROUP = "members"  # hash tag shared by the membership sets, so one call covers both
STATE_FILE = "fleet.json"


@dataclass(frozen=True)
class LiveCount:
    cluster: int
    fleet: int


def remembered(state_dir: str | None) -> int:
    """The live count N kept in `state_dir` by an earlier run, or 1."""
    if state_dir is None:
        return 1
    path = Path(state_dir) / STATE_FILE
    try:
        replicas = json.loads(path.read_text())["replicas"]
    except FileNotFoundError:
        return 1
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("cannot read the remembered live count from %s (%s); assuming none", path,
                    type(e).__name__)
        return 1
    return replicas if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas > 0 else 1


class Membership:
    """Heartbeats every `interval` seconds; `count` is the last known live count (at least
    `expected`, until heartbeats have shown otherwise)."""

    def __init__(self, gateway: Gateway, *, replica_id: str, cluster: str,
                 interval: float, expected: int = 1, state_dir: str | None = None) -> None:
        self._gateway = gateway
        self.replica_id = replica_id
        self.cluster = cluster
        self.interval = interval
        self._state_dir = state_dir
        first = max(expected, remembered(state_dir))
        self.count = LiveCount(first, first)
        self._saved = first
        self.fresh = False  # True once a heartbeat succeeded
        # A replica is live for 3 heartbeats; the assumed count takes part in the first ones too,
        # so a replica starting as Redis comes back empty does not believe it is alone at once.
        self._recent: deque[LiveCount] = deque([self.count], maxlen=3)
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
        self._remember(self.count.fleet)
        return True

    def _remember(self, fleet: int) -> None:
        """Keep the fleet's size for a restart while Redis is down (written only when it changes)."""
        if self._state_dir is None or fleet == self._saved:
            return
        self._saved = fleet
        try:
            Path(self._state_dir).mkdir(parents=True, exist_ok=True)
            write_atomic(Path(self._state_dir) / STATE_FILE, json.dumps({"replicas": fleet}).encode())
        except OSError as e:
            log.warning("cannot remember the live count in %s: %s", self._state_dir, e)

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


def membership_for(gateway: Gateway, settings: RedisSettings, *, replica_id: str, cluster: str) -> Membership:
    """The membership of one replica as `settings` describe it."""
    return Membership(gateway, replica_id=replica_id, cluster=cluster, interval=settings.heartbeat,
                      expected=settings.expected_replicas, state_dir=settings.state_dir)
