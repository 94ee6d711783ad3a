"""Emergency-brake orders through Redis: signed by the operator, verified and kept by every replica.

`issue` (behind `guard fleet shed`) and `lift` (`guard fleet lift`) sign a `ShedOrder` with the
fleet's bundle key (Ed25519, as guard.federation.bundles signs bundles), store it in one Redis hash
(`{shed}:orders`, field = order id) and publish its id. A replica's `ShedWatcher` re-reads the hash
on every message and every second, verifies each new record with `redis.publicKey`, and hands the
orders in force to the request path's `Shedding` (guard.admission.shedding). Write access to Redis
alone can neither shed nor lift: an unsigned or tampered record is refused, logged and counted
once. Only a signed lift or the expiry ends an order: a record vanishing from Redis (a flush, an
outage, a deletion) leaves it in force until it expires. The verified records are kept on local
disk (`shed.json` beside the last good bundle), so a restart while Redis is down keeps them.
Logs on every replica: taking effect, lifted, expired, refused. Never blocks the request path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from guard.admission.shedding import MAX_ORDERS, OrderInvalid, Shedding, ShedOrder
from guard.config.files import write_atomic
from guard.federation import background
from guard.federation.connection import FederationError, Gateway

log = logging.getLogger(__name__)

GROUP = "shed"
DISK_NAME = "shed.json"
MAX_RECORD = 64 << 10
"""Largest order record accepted (bytes)."""
REFUSED_KEPT = 1000
"""Distinct refused records remembered (so each is logged and counted once)."""


class OrderRefused(Exception):
    """A record failed verification or decoding."""


def sign(order: ShedOrder, key: Ed25519PrivateKey) -> bytes:
    return key.sign(order.payload())


def verify(payload: bytes, signature: bytes, key: Ed25519PublicKey) -> ShedOrder:
    """The order in `payload` when `signature` is valid for it; raises OrderRefused otherwise."""
    if len(payload) > MAX_RECORD:
        raise OrderRefused(f"larger than {MAX_RECORD} bytes")
    try:
        key.verify(signature, payload)
    except InvalidSignature as e:
        raise OrderRefused("bad signature") from e
    try:
        return ShedOrder.from_payload(payload)
    except OrderInvalid as e:
        raise OrderRefused(f"malformed order: {e}") from e


def record(order: ShedOrder, key: Ed25519PrivateKey) -> str:
    """The stored form: the signed payload and its signature (hex)."""
    return json.dumps({"payload": order.payload().decode(), "signature": sign(order, key).hex()})


def decode_record(raw: bytes | str) -> tuple[bytes, bytes]:
    """(payload, signature) of a stored record; raises OrderRefused when it is not one."""
    if len(raw) > 2 * MAX_RECORD:
        raise OrderRefused(f"larger than {2 * MAX_RECORD} bytes")
    try:
        data = json.loads(raw)
        return str(data["payload"]).encode(), bytes.fromhex(str(data["signature"]))
    except (ValueError, KeyError, TypeError) as e:
        raise OrderRefused("not a signed order record") from e


def orders_key(gateway: Gateway) -> str:
    return gateway.key(GROUP, "orders")


def channel(gateway: Gateway) -> str:
    return f"{gateway.settings.key_prefix}shed"


async def issue(gateway: Gateway, order: ShedOrder, key: Ed25519PrivateKey) -> None:
    """Store `order` signed, tell every replica, and drop records that expired an hour ago."""
    await gateway.call("HSET", orders_key(gateway), order.id, record(order, key))
    await gateway.call("PUBLISH", channel(gateway), order.id)
    await _prune(gateway, time.time() - 3600)


async def stored(gateway: Gateway) -> dict[str, bytes]:
    """Every stored record by order id."""
    raw = await gateway.call("HGETALL", orders_key(gateway)) or {}
    return {_text(k): v if isinstance(v, bytes) else str(v).encode() for k, v in raw.items()}


async def _prune(gateway: Gateway, before: float) -> None:
    old = []
    for order_id, raw in (await stored(gateway)).items():
        try:
            if ShedOrder.from_payload(decode_record(raw)[0]).expires < before:
                old.append(order_id)
        except (OrderRefused, OrderInvalid):
            continue  # a bad record is the replicas' to refuse and count, and the operator's to see
    if old:
        await gateway.call("HDEL", orders_key(gateway), *old)


class ShedWatcher:
    """Keeps one replica's `Shedding` on the fleet's verified orders: Redis when it answers, what
    it already has (and its disk copy) when not."""

    def __init__(self, gateway: Gateway, public_key: Ed25519PublicKey, shedding: Shedding, *,
                 state_dir: str | Path | None = None, poll_interval: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._gateway = gateway
        self._key = public_key
        self.shedding = shedding
        self._dir = Path(state_dir) if state_dir else None
        self.poll_interval = poll_interval
        self._clock = clock
        self.known: dict[str, tuple[ShedOrder, bytes, bytes]] = {}
        """Verified orders (lifted ones too, until they expire: a lift is final) and their record."""
        self._refused: set[tuple[str, bytes]] = set()
        self._settled: set[tuple[str, bytes]] = set()
        """Verified records that changed nothing: not verified again on every re-read."""
        self._tasks: list[asyncio.Task[None]] = []

    def offer(self, order_id: str, payload: bytes, signature: bytes) -> bool:
        """Take one record: True when it changed what this replica knows."""
        held = self.known.get(order_id)
        if held is not None and (held[1], held[2]) == (payload, signature):
            return False  # seen and verified already: no signature check per re-read
        if (order_id, payload + signature) in self._settled:
            return False  # verified before and changed nothing (expired, or replayed after a lift)
        try:
            order = verify(payload, signature, self._key)
            if order.id != order_id:
                raise OrderRefused(f"signed for order {order.id}, stored as {order_id}")
        except OrderRefused as e:
            self._refuse(order_id, payload + signature, str(e))
            return False
        return self._learn(order, payload, signature)

    def _refuse(self, order_id: str, raw: bytes, why: str) -> None:
        if (order_id, raw) in self._refused:
            return
        if len(self._refused) >= REFUSED_KEPT:
            self._refused.clear()
        self._refused.add((order_id, raw))
        self.shedding.stats.orders_refused += 1
        log.warning("refused shed order %s: %s", order_id[:64], why)

    def _learn(self, order: ShedOrder, payload: bytes, signature: bytes) -> bool:
        held = self.known.get(order.id)
        now = self._clock()
        if (held is not None and held[0].lifted) or order.expires <= now:
            # A lift is final (a replayed unlifted record changes nothing); an old record is over.
            self._settle(order.id, payload + signature)
            return False
        if held is None and not order.lifted and self._in_force_count(now) >= MAX_ORDERS:
            self._refuse(order.id, payload + signature, f"more than {MAX_ORDERS} orders in force")
            return False
        self.known[order.id] = (order, payload, signature)
        if order.lifted and held is not None:
            self.shedding.stats.orders_lifted += 1
            log.warning("shed order %s lifted: %s", order.id, order.describe())
        elif not order.lifted:
            self.shedding.stats.orders_taken += 1
            log.warning("shed order %s in force until %s: %s; reason: %s (by %s)", order.id,
                        _when(order.expires), order.describe(), order.reason, order.by or "-")
        return True

    def _settle(self, order_id: str, raw: bytes) -> None:
        if len(self._settled) >= REFUSED_KEPT:
            self._settled.clear()
        self._settled.add((order_id, raw))

    def _in_force_count(self, now: float) -> int:
        return sum(o.in_force(now) for o, _, _ in self.known.values())

    def sweep(self) -> bool:
        """Forget orders past their expiry (logging those that were in force); publish the rest."""
        now = self._clock()
        ended = [o for o, _, _ in self.known.values() if o.expires <= now]
        for order in ended:
            _, payload, signature = self.known.pop(order.id)
            self._settle(order.id, payload + signature)
            if not order.lifted:
                self.shedding.stats.orders_expired += 1
                log.warning("shed order %s expired: %s", order.id, order.describe())
        self.shedding.replace(o for o, _, _ in self.known.values() if o.in_force(now))
        return bool(ended)

    async def refresh(self) -> bool:
        """Read every record from Redis and take the new ones; False when Redis cannot be read
        (the orders this replica has stay in force until they expire)."""
        try:
            records = await stored(self._gateway)
        except FederationError:
            self.sweep()
            return False
        changed = False
        for order_id, raw in records.items():
            try:
                payload, signature = decode_record(raw)
            except OrderRefused as e:
                self._refuse(order_id, raw, str(e))
                continue
            changed = self.offer(order_id, payload, signature) or changed
        if self.sweep() or changed:
            self._save()
        return True

    def _save(self) -> None:
        if self._dir is None:
            return
        records = [{"id": i, "payload": p.decode(), "signature": s.hex()}
                   for i, (_, p, s) in self.known.items()]
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self._dir / DISK_NAME, json.dumps(records).encode())
        except OSError as e:
            log.warning("cannot keep shed orders on disk in %s: %s", self._dir, e.strerror)

    def load_disk(self) -> int:
        """Take the orders kept on disk (verified again: the disk is not trusted more than Redis)."""
        path = self._dir / DISK_NAME if self._dir else None
        if path is None or not path.exists():
            return 0
        try:
            records = json.loads(path.read_text())
            entries = [(str(r["id"]), str(r["payload"]).encode(), bytes.fromhex(r["signature"]))
                       for r in records]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._refuse(str(path), b"", "unreadable shed order file")
            return 0
        taken = sum(self.offer(*entry) for entry in entries)
        self.sweep()
        return taken

    async def start(self) -> None:
        """The orders on disk, then Redis's, then follow messages and re-read every second."""
        self.load_disk()
        await self.refresh()
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self._poll(), name="guard-shed-poll"))
            self._tasks.append(asyncio.create_task(self._listen(), name="guard-shed-listen"))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.refresh()
            except Exception:  # the re-read must outlive any bug in one record
                log.exception("shed order re-read failed")

    async def _listen(self) -> None:
        while True:
            pubsub: Any = self._gateway.pubsub()
            try:
                await pubsub.subscribe(channel(self._gateway))
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        await self.refresh()
            except Exception as e:  # redis-py raises many kinds; resubscribe after any of them
                log.debug("shed order subscription lost: %s", type(e).__name__)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # closing a broken connection may raise anything
                    pass
            await asyncio.sleep(self.poll_interval)

    async def close(self) -> None:
        await background.stop(self._tasks)
        self._tasks.clear()


def _text(data: object) -> str:
    return data.decode() if isinstance(data, bytes) else str(data)


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
