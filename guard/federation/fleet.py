"""One replica's place in the fleet: the Redis gateway, lease store, quarantine board, policy
bundle watcher and emergency-brake orders, built together and living as long as the process
(across SIGHUP reloads).

`build_fleet` constructs them, and the shared cluster health (guard.federation.health), over one
shared `Gateway`; `start` never fails because Redis is down (the store trips its breaker and serves
on the fail modes, the board, the watcher and the health exchange retry in the background, the
watcher falls back to the last good bundle on disk); `close` stops them all.
It must never block the request path and never decide policy itself: good bundles go to the
`apply` callback the caller supplies.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from guard.admission.shedding import Shedding
from guard.federation.bundles import Bundle, BundleWatcher, load_public_key
from guard.federation.config import RedisSettings
from guard.federation.connection import Gateway
from guard.federation.health import FleetHealth
from guard.federation.leases import RedisQuotaStore
from guard.federation.membership import membership_for
from guard.federation.quarantine import QuarantineBoard
from guard.federation.shedding import ShedWatcher
from guard.kube.errors import ConfigError


def replica_id() -> str:
    """`host-pid`: unique per process, so `--workers N` counts as N replicas."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Fleet:
    """Everything one replica shares with the others through Redis."""

    gateway: Gateway
    store: RedisQuotaStore
    board: QuarantineBoard
    bundles: BundleWatcher | None = None
    health: FleetHealth | None = None
    shed: ShedWatcher | None = None
    """The emergency brake's orders (guard.federation.shedding); only with `publicKey`."""

    @property
    def shedding(self) -> Shedding | None:
        return self.shed.shedding if self.shed is not None else None

    async def start(self) -> None:
        await self.store.start()  # Redis down: the store trips its breaker and logs one line
        await self.board.start()
        if self.bundles is not None:
            await self.bundles.start()
        if self.shed is not None:
            await self.shed.start()
        if self.health is not None:
            await self.health.start()

    async def close(self) -> None:
        if self.health is not None:
            await self.health.close()
        if self.shed is not None:
            await self.shed.close()
        if self.bundles is not None:
            await self.bundles.close()
        await self.board.close()
        await self.store.close()  # closes the gateway last

    def counters(self) -> dict[str, int]:
        """Bundle counters for /metrics (the store and board export their own)."""
        if self.bundles is None:
            return {}
        current = self.bundles.current
        return {**vars(self.bundles.stats), "version": current.version if current else 0}


def build_fleet(settings: RedisSettings, *, cluster: str, apply: Callable[[Bundle], None],
                replica: str | None = None) -> Fleet:
    """The fleet objects for one replica; bundles only when `publicKey` is set. Raises ConfigError
    when the public key cannot be read (a bad key must stop startup, not silently skip bundles)."""
    gateway = Gateway(settings)
    me = replica or replica_id()
    membership = membership_for(gateway, settings, replica_id=me, cluster=cluster)
    store = RedisQuotaStore(gateway, membership, tick=settings.tick, lease_ttl=settings.lease_ttl)
    # Endpoint views every heartbeat, through the store's breaker (one door to one Redis).
    health = FleetHealth(gateway, replica=me, interval=settings.heartbeat, breaker=store.breaker)
    watcher = shed = None
    if settings.public_key:
        try:
            key = load_public_key(settings.public_key)
        except (OSError, ValueError) as e:
            raise ConfigError([f"redis.publicKey: {settings.public_key}: cannot load an Ed25519 public "
                               f"key ({type(e).__name__})"]) from e
        watcher = BundleWatcher(gateway, key, apply, bundle_dir=settings.bundle_dir,
                                poll_interval=settings.bundle_poll)
        shed = ShedWatcher(gateway, key, Shedding(), state_dir=settings.bundle_dir)
    return Fleet(gateway, store, QuarantineBoard(gateway), watcher, health, shed)

