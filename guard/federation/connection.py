"""The connection to the shared Redis: build the client from `RedisSettings`, call guard's functions.

One `Gateway` per replica owns a bounded pool (single node, TLS, ACL user), a Redis Cluster client
or a Sentinel-managed master, with explicit socket and connect timeouts so no call waits longer
than `timeout`. It loads `gcra.lua` as a function library (`FUNCTION LOAD REPLACE`, `FCALL`) and
falls back to `EVALSHA` on Redis 6, reloading after a restart wiped the library. Every redis-py
error is translated here into `RedisUnavailable` or `RedisFailed`; no redis exception leaves this
module, and no password ever appears in a message.
"""

from __future__ import annotations

import logging
import ssl
from importlib import resources
from pathlib import Path
from typing import Any

import redis.asyncio as aredis
from redis import exceptions as rexc
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import Sentinel

from guard.federation.config import RedisSettings, SentinelSettings
from guard.kube.errors import GuardError

log = logging.getLogger(__name__)

LIBRARY = "guard"
FUNCTIONS = ("lease", "heartbeat", "quarantine", "quarantined", "rejections")


class FederationError(GuardError):
    """Base of the errors the Redis adapter raises."""

    code = 503
    reason = "ServiceUnavailable"


class RedisUnavailable(FederationError):
    """Redis could not be reached, timed out, or is failing over."""


class RedisFailed(FederationError):
    """Redis answered with an error (a bug or a misconfiguration, not an outage)."""


def lua_source() -> str:
    return resources.files("guard.federation").joinpath("gcra.lua").read_text()


def library_code() -> str:
    """The Redis 7 function library: the shared body plus one registration per function."""
    registrations = "".join(f"redis.register_function('guard_{n}', {n})\n" for n in FUNCTIONS)
    return f"#!lua name={LIBRARY}\n{lua_source()}\n{registrations}"


def script_code() -> str:
    """The Redis 6 script: the same body, dispatched on ARGV[1] (the function's name)."""
    table = ", ".join(f"{n} = {n}" for n in FUNCTIONS)
    return (f"{lua_source()}\nlocal fns = {{{table}}}\n"
            "return fns[ARGV[1]](KEYS, {unpack(ARGV, 2)})\n")


def translate(e: rexc.RedisError | OSError) -> FederationError:
    """guard's error for a redis-py (or socket) error."""
    if isinstance(e, rexc.BusyLoadingError):
        return RedisUnavailable("redis is loading its dataset")
    if isinstance(e, rexc.ConnectionError | rexc.TimeoutError | rexc.ClusterDownError | OSError):
        return RedisUnavailable(_tls_failure(e) or f"redis unreachable: {type(e).__name__}")
    return RedisFailed(f"redis error: {e}")


def _tls_failure(e: BaseException) -> str | None:
    """A refused TLS handshake is a misconfiguration rather than an outage: say so, and what to check."""
    cause: BaseException | None = e
    for _ in range(8):  # redis-py wraps the ssl error once or twice; never loop on a cycle
        if cause is None:
            return None
        if isinstance(cause, ssl.SSLError):
            parts = [cause.reason, getattr(cause, "verify_message", None)]
            detail = ": ".join(p for p in parts if p) or str(cause)
            return (f"redis unreachable: TLS handshake refused ({detail}): "
                    "check redis.caFile, certFile and keyFile")
        cause = cause.__cause__ or cause.__context__
    return None


def _password(settings: RedisSettings) -> str | None:
    if settings.password_file:
        lines = Path(settings.password_file).read_text().splitlines()
        return lines[0] if lines else ""
    return settings.password


def _common(settings: RedisSettings) -> dict[str, Any]:
    """Keyword arguments every client kind shares: timeouts, credentials, TLS files."""
    kwargs: dict[str, Any] = {
        "socket_timeout": settings.timeout,
        "socket_connect_timeout": settings.timeout,
        "retry_on_timeout": False,
        "health_check_interval": 0,
    }
    if settings.username:
        kwargs["username"] = settings.username
    password = _password(settings)
    if password is not None:
        kwargs["password"] = password
    if settings.url.startswith("rediss://"):
        kwargs.update(ssl_ca_certs=settings.ca_file, ssl_certfile=settings.cert_file,
                      ssl_keyfile=settings.key_file)
    return kwargs


def build_client(settings: RedisSettings) -> Any:
    """A redis-py asyncio client for the settings (single node, Cluster or Sentinel)."""
    kwargs = _common(settings)
    if settings.cluster:
        kwargs.pop("retry_on_timeout")  # the Cluster client retries by node refresh instead
        return RedisCluster.from_url(settings.url, max_connections=settings.pool_size, **kwargs)
    if settings.sentinel is not None:
        return _sentinel_master(settings, settings.sentinel, kwargs)
    pool = aredis.BlockingConnectionPool.from_url(
        settings.url, max_connections=settings.pool_size, timeout=settings.timeout, **kwargs)
    return aredis.Redis(connection_pool=pool)


def _sentinel_master(settings: RedisSettings, sentinel: SentinelSettings, kwargs: dict[str, Any]) -> Any:
    """The master named in `sentinel`, found through the sentinels and found again after a failover.

    The URL's host is not used (the sentinels name the master), but its database, user and password
    are, as for a single node. With rediss:// both the master and the sentinels are spoken to over
    TLS with the same CA and client certificate (Sentinel inherits Redis's TLS settings)."""
    from_url = parse_url(settings.url)
    options: dict[str, Any] = {k: from_url[k] for k in ("db", "username", "password") if k in from_url}
    # No max_connections: redis-py's Sentinel pool does not block when full but fails the call,
    # and guard's few background tasks bound its size anyway.
    kwargs = {**options, **kwargs}
    to_sentinels = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
    if settings.url.startswith("rediss://"):
        kwargs["ssl"] = True
        to_sentinels.update({k: v for k, v in kwargs.items() if k.startswith("ssl")})
    manager = Sentinel(list(sentinel.addresses),  # type: ignore[no-untyped-call]
                       sentinel_kwargs=to_sentinels, **kwargs)
    return manager.master_for(sentinel.master)


def _owned(client: Any) -> list[Any]:
    """The client and, behind a Sentinel-managed one, the clients that talk to the sentinels."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    return [client, *getattr(manager, "sentinels", [])]


def lost_script(error: Exception) -> bool:
    """Redis no longer has guard's functions (Redis 7: "Function not found") or script (Redis 6:
    NOSCRIPT, which redis-py words as "No matching script")."""
    text = str(error).lower()
    return "function not found" in text or "noscript" in text or "no matching script" in text


class Gateway:
    """guard's only door to Redis: plain commands, guard's functions, pub/sub."""

    def __init__(self, settings: RedisSettings, client: Any | None = None) -> None:
        self.settings = settings
        self._client = client if client is not None else build_client(settings)
        self._use_functions = True
        self._sha: str | None = None
        self._loaded = False
        self.calls = 0
        self.last_error = ""
        """Why the last failed call failed (no secret in it), for the outage's log line."""

    async def call(self, *args: Any) -> Any:
        """One Redis command; library errors become guard's."""
        return await self._guarded(self._client.execute_command(*args))

    async def function(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Call `name` from gcra.lua; (re)loads the library when Redis lost it."""
        if not self._loaded:
            await self.load()
        try:
            return await self._invoke(name, keys, args)
        except RedisFailed as e:
            if not lost_script(e):
                raise
            log.info("redis lost guard's functions (restart?); reloading")
            await self.load()
            return await self._invoke(name, keys, args)

    async def _invoke(self, name: str, keys: list[str], args: list[Any]) -> Any:
        if self._use_functions:
            return await self.call("FCALL", f"guard_{name}", len(keys), *keys, *args)
        return await self.call("EVALSHA", self._sha, len(keys), *keys, name, *args)

    async def load(self) -> None:
        """FUNCTION LOAD REPLACE on Redis 7; SCRIPT LOAD on Redis 6 (no FUNCTION command)."""
        try:
            if self._use_functions:
                await self._guarded(self._client.function_load(library_code(), replace=True))
            else:
                self._sha = await self._guarded(self._client.script_load(script_code()))
        except RedisFailed as e:
            if not self._use_functions or "unknown command" not in str(e).lower():
                raise
            self._use_functions = False
            self._sha = await self._guarded(self._client.script_load(script_code()))
        self._loaded = True

    async def _guarded(self, awaitable: Any) -> Any:
        self.calls += 1
        try:
            return await awaitable
        except (rexc.RedisError, OSError) as e:
            error = translate(e)
            self.last_error = str(error)
            raise error from e

    def pubsub(self, *, ignore_subscribe_messages: bool = True) -> Any:
        """A pub/sub handle; on a Cluster it talks to the configured node (PUBLISH is fleet-wide).
        With `ignore_subscribe_messages=False` the caller also sees each (re)subscription."""
        if self.settings.cluster:
            node = aredis.Redis.from_url(self.settings.url, **_common(self.settings))
            return node.pubsub(ignore_subscribe_messages=ignore_subscribe_messages)
        return self._client.pubsub(ignore_subscribe_messages=ignore_subscribe_messages)

    def key(self, tag: str, *parts: str) -> str:
        """`prefix{tag}:part:...` — the braces keep every key of one tag in one Cluster slot."""
        return f"{self.settings.key_prefix}{{{tag}}}" + "".join(f":{p}" for p in parts)

    async def close(self) -> None:
        for client in _owned(self._client):
            try:
                await client.aclose()
            except (rexc.RedisError, OSError):
                pass
