"""Signed policy bundles: versioned sets of TenantPolicy files, Ed25519-signed, shared through Redis.

`publish` (behind `guard policy push`) signs a validated set and makes it the live bundle.
A replica's `BundleWatcher` verifies every bundle with the configured public key, hands good ones
to an `apply` callback (which swaps the policies atomically, or raises to refuse), and keeps the
last good bundle on local disk so a restart while Redis is down still has it. Unsigned, tampered or
older bundles are refused and counted; the last good bundle stays in force. Never applies a
bundle whose signature it has not checked, and never writes a half-written file.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from guard.config.files import write_atomic
from guard.federation import background
from guard.federation.connection import FederationError, Gateway
from guard.policy.loading import SUFFIXES, policies_of
from guard.policy.model import TenantPolicy

log = logging.getLogger(__name__)

GROUP = "bundles"
DISK_NAME = "bundle.json"
LISTEN_WAIT = 1.0
"""Seconds one wait for a pub/sub message may take (the loop then waits again)."""
RESUBSCRIBE_AFTER = 0.5
"""Seconds between attempts to subscribe again while Redis is unreachable."""


class BundleRefused(Exception):
    """A bundle failed verification or decoding."""


@dataclass(frozen=True)
class Bundle:
    """A policy set: file name -> YAML text, and the version the fleet knows it by."""

    version: int
    files: dict[str, str] = field(hash=False)
    created: str = ""

    def payload(self) -> bytes:
        """The exact bytes that are signed: canonical JSON."""
        body = {"version": self.version, "created": self.created, "files": self.files}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def bundle_policies(bundle: Bundle) -> tuple[list[TenantPolicy], list[str]]:
    """The bundle's policies in file-name order (as a directory would load), and every problem."""
    names = sorted(n for n in bundle.files if n.endswith(SUFFIXES))
    return policies_of((f"bundle v{bundle.version}/{name}", bundle.files[name]) for name in names)


def sign(bundle: Bundle, key: Ed25519PrivateKey) -> bytes:
    return key.sign(bundle.payload())


MAX_PAYLOAD = 8 << 20
"""Largest bundle accepted (8 MiB); each file in it is bounded like a policy file on disk."""
MAX_FILES = 1000


def verify(payload: bytes, signature: bytes, key: Ed25519PublicKey) -> Bundle:
    """The bundle in `payload` if `signature` is valid for it; raises BundleRefused otherwise."""
    if len(payload) > MAX_PAYLOAD:
        raise BundleRefused(f"larger than {MAX_PAYLOAD} bytes")
    try:
        key.verify(signature, payload)
    except InvalidSignature as e:
        raise BundleRefused("bad signature") from e
    try:
        data = json.loads(payload)
        files = {str(k): str(v) for k, v in data["files"].items()}
        if len(files) > MAX_FILES:
            raise BundleRefused(f"more than {MAX_FILES} files")
        return Bundle(int(data["version"]), files, str(data.get("created", "")))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BundleRefused("malformed bundle") from e


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def keygen(private_path: Path, public_path: Path) -> None:
    """A new Ed25519 key pair as PEM files (the private one readable by its owner only)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    write_atomic(private_path, private, mode=0o600)
    write_atomic(public_path, public)


async def publish(gateway: Gateway, files: dict[str, str], key: Ed25519PrivateKey, *,
                  created: str = "") -> Bundle:
    """Make `files` the fleet's live bundle under the next version, and tell every replica."""
    version = int(await gateway.call("INCR", gateway.key(GROUP, "version")))
    bundle = Bundle(version, files, created)
    await gateway.call("HSET", gateway.key(GROUP, "live"), "payload", bundle.payload(),
                       "signature", sign(bundle, key), "version", version)
    await gateway.call("PUBLISH", channel(gateway), str(version))
    return bundle


async def fetch(gateway: Gateway) -> tuple[bytes, bytes] | None:
    """The live bundle's payload and signature as stored, or None when none was pushed."""
    raw = await gateway.call("HMGET", gateway.key(GROUP, "live"), "payload", "signature")
    if not raw or raw[0] is None:
        return None
    return bytes(raw[0]), bytes(raw[1] or b"")


RESTORE = """
local live = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') or 0
local wanted = tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 0 or live < wanted then
  redis.call('HSET', KEYS[1], 'payload', ARGV[1], 'signature', ARGV[2], 'version', ARGV[3])
end
if (tonumber(redis.call('GET', KEYS[2]) or '0') or 0) < wanted then
  redis.call('SET', KEYS[2], ARGV[3])
end
return 1
"""


async def restore(gateway: Gateway, payload: bytes, signature: bytes, version: int) -> None:
    """Put a replica's verified bundle back when Redis lost it (a restart without persistence):
    the live bundle unless Redis holds a newer one, and the version counter at least this high,
    so the next push is numbered above what the replicas hold and is not refused as old."""
    keys = [gateway.key(GROUP, "live"), gateway.key(GROUP, "version")]
    await gateway.call("EVAL", RESTORE, len(keys), *keys, payload, signature, version)


def channel(gateway: Gateway) -> str:
    return f"{gateway.settings.key_prefix}bundles"


@dataclass
class BundleStats:
    applied: int = 0
    refused: int = 0
    restored: int = 0
    """Times this replica put its bundle back into a Redis that had lost it."""
    notified: int = 0
    """Push notifications received on the bundles channel."""
    subscriptions: int = 0
    """Times the channel was (re)subscribed: each is followed by a read of the live bundle."""


class BundleWatcher:
    """Keeps one replica on the newest good bundle: from Redis when it can, from disk otherwise."""

    def __init__(self, gateway: Gateway, public_key: Ed25519PublicKey, apply: Callable[[Bundle], None],
                 *, bundle_dir: str | Path | None = None, poll_interval: float = 5.0) -> None:
        self._gateway = gateway
        self._key = public_key
        self._apply = apply
        self._dir = Path(bundle_dir) if bundle_dir else None
        self.poll_interval = poll_interval
        self.current: Bundle | None = None
        self._signed: tuple[bytes, bytes] | None = None
        """The current bundle's payload and signature, as verified."""
        self.stats = BundleStats()
        self._tasks: list[asyncio.Task[None]] = []

    def offer(self, payload: bytes, signature: bytes, *, save: bool = True) -> bool:
        """Verify and apply a bundle newer than the current one; False when refused or not newer."""
        try:
            bundle = verify(payload, signature, self._key)
        except BundleRefused as e:
            self.stats.refused += 1
            log.warning("refused a policy bundle: %s", e)
            return False
        if self.current is not None and bundle.version <= self.current.version:
            return False
        try:
            self._apply(bundle)
        except Exception as e:  # the callback rejects bad policies any way it likes
            self.stats.refused += 1
            log.warning("refused policy bundle v%d: %s", bundle.version, e)
            return False
        self.current, self._signed = bundle, (payload, signature)
        self.stats.applied += 1
        log.info("applied policy bundle v%d (%d files)", bundle.version, len(bundle.files))
        if save:
            self._save(payload, signature)
        return True

    def _save(self, payload: bytes, signature: bytes) -> None:
        if self._dir is None:
            return
        record = {"payload": payload.decode(), "signature": signature.hex()}
        self._dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self._dir / DISK_NAME, json.dumps(record).encode())

    def load_disk(self) -> bool:
        """Apply the last good bundle kept on disk (verified again: the disk is not trusted more)."""
        path = self._dir / DISK_NAME if self._dir else None
        if path is None or not path.exists():
            return False
        try:
            record = json.loads(path.read_text())
            payload, signature = record["payload"].encode(), bytes.fromhex(record["signature"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.stats.refused += 1
            return False
        return self.offer(payload, signature, save=False)

    async def check(self) -> bool:
        """Fetch the live bundle and apply it if it is newer; False when Redis cannot be read."""
        try:
            stored = await fetch(self._gateway)
            if stored is not None:
                self.offer(*stored)
            elif self.current is not None and self._signed is not None:
                await restore(self._gateway, *self._signed, self.current.version)
                self.stats.restored += 1
                log.warning("redis had no policy bundle; put back v%d", self.current.version)
        except FederationError:
            return False
        return True

    async def start(self) -> None:
        """The newest bundle now (Redis, else disk), then follow pushes, and poll as the fallback."""
        if not await self.check() or self.current is None:
            self.load_disk()
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self._poll(), name="guard-bundles-poll"))
            self._tasks.append(asyncio.create_task(self._listen(), name="guard-bundles-listen"))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            await self.check()

    async def _listen(self) -> None:
        """Follow the bundles channel: a push notification fetches and verifies the live bundle at
        once. Every (re)subscription — the first, one redis-py makes itself after reconnecting, or
        a fresh handle after a failure — reads the live bundle too, so a push made while the
        subscription was down is not left to the poll."""
        while True:
            pubsub: Any = self._gateway.pubsub(ignore_subscribe_messages=False)
            try:
                await pubsub.subscribe(channel(self._gateway))
                while True:
                    message = await pubsub.get_message(timeout=LISTEN_WAIT)
                    if message:
                        await self._heard(message.get("type"))
            except Exception as e:  # redis-py raises many kinds; resubscribe after any of them
                log.debug("bundle subscription lost: %s", type(e).__name__)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass
            await asyncio.sleep(RESUBSCRIBE_AFTER)

    async def _heard(self, kind: object) -> None:
        if kind == "message":
            self.stats.notified += 1
        elif kind == "subscribe":
            self.stats.subscriptions += 1
        else:
            return
        await self.check()

    async def close(self) -> None:
        await background.stop(self._tasks)
        self._tasks.clear()
