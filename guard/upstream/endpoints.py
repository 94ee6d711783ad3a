"""The api-server endpoints of a cluster.

Per endpoint, one keep-alive pool (`guard.http.client`) for every proxied request, watch and tunnel,
and one `aiohttp.ClientSession` for guard's own reviews and readiness checks, both built once and
reused, an in-flight count and its circuit breaker (`guard.routing.breaker`), fed by every
connection outcome; endpoint choice is `guard.routing.balance` (healthy first, least in flight,
slow start). It must never put a token or key material into a log line, an exception message or a
repr.
"""

from __future__ import annotations

import itertools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from guard.http import client
from guard.http.headers import request_head
from guard.http.pool import Pool
from guard.routing import balance
from guard.routing.breaker import EndpointHealth
from guard.routing.config import HealthSettings
from guard.upstream.credentials import Credential

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 5.0
"""Seconds to open a TCP (+TLS) connection to an api-server before trying the next endpoint."""
KEEPALIVE = 30.0
"""Seconds an idle upstream connection is kept for reuse."""
FAILURES = (client.ConnectFailed, client.ConnectionBroken, client.BadResponse, TimeoutError)
"""What the lean client raises when an endpoint, not the request, is at fault."""
Clock = Callable[[], float]


class _Slot:
    """An endpoint's in-flight count as a context manager; one object per endpoint serves every
    request, since entering and leaving carry no state of their own (no generator per request)."""

    __slots__ = ("_endpoint",)

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint

    def __enter__(self) -> None:
        self._endpoint.in_flight += 1

    def __exit__(self, *_: object) -> None:
        self._endpoint.in_flight -= 1


class Endpoint:
    """One api-server URL with its own connection pool, in-flight count and circuit breaker."""

    def __init__(self, url: str, credential: Credential, *, health: EndpointHealth | None = None,
                 clock: Clock = time.monotonic, cluster: str = "") -> None:
        self.url = url
        self.cluster = cluster
        parts = urlsplit(url)
        self.base_path = parts.path.rstrip("/")
        self.in_flight = 0
        self._slot = _Slot(self)
        self.health = health or EndpointHealth(HealthSettings())
        self.clock = clock
        tls = (credential.ssl or ssl.create_default_context()) if parts.scheme == "https" else None
        self.host = parts.hostname or "localhost"
        self.pool = Pool(self.host, parts.port or (443 if tls else 80), ssl_context=tls,
                            connect_timeout=CONNECT_TIMEOUT, keepalive=KEEPALIVE)
        self.host_header = parts.netloc.rpartition("@")[2]
        # No connection limit: every watch holds a connection for as long as it runs.
        connector = aiohttp.TCPConnector(
            limit=0, ssl=tls if tls is not None else False, ttl_dns_cache=300, keepalive_timeout=KEEPALIVE)
        # A dummy cookie jar: cookies of one caller must never be replayed for another.
        self.session = aiohttp.ClientSession(
            base_url=None, connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False, trust_env=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT))
        self.origin = f"{parts.scheme}://{parts.netloc}"

    def __repr__(self) -> str:
        return f"Endpoint({self.url!r}, in_flight={self.in_flight}, {self.health.state})"

    def slot(self) -> _Slot:
        """`with endpoint.slot():` counts one request in flight here while the block runs
        (least-in-flight balancing)."""
        return self._slot

    async def request(self, method: str, target: str, headers: Iterable[tuple[str, str]], body: client.Body,
                      *, chunked: bool, read_timeout: float | None, retry_stale: bool) -> client.Response:
        """`Pool.request` for `target` under this endpoint's base path, with its outcome told
        to the breaker."""
        head = request_head(method, self.base_path + target, self.host_header, headers, chunked=chunked)
        try:
            response = await self.pool.request(method, head, body, chunked=chunked,
                                               read_timeout=read_timeout, retry_stale=retry_stale)
        except FAILURES as e:
            self.failed(type(e).__name__)
            raise
        self.answered()
        return response

    def answered(self) -> None:
        """The api-server answered (whatever the status): it is alive."""
        health = self.health
        now = health.answered_at = self.clock()  # the fleet's views compare it with openings
        if health.consecutive or not health.up:
            was_up = health.up
            health.succeeded(now)
            if not was_up:
                log.warning("api-server %s of cluster %s answers again: circuit closed, slow start %gs",
                            self.origin, self.cluster, health.settings.slow_start)

    def failed(self, reason: str) -> None:
        """A connection failed or timed out (`reason`: the error's kind, never its message)."""
        health = self.health
        opens = health.opens
        health.failed(self.clock(), reason)
        if health.opens != opens:
            log.warning("api-server %s of cluster %s failed %d times in a row (%s): circuit open",
                        self.origin, self.cluster, health.consecutive, reason)

    def snapshot(self) -> dict[str, Any]:
        return {"url": self.url, "inFlight": self.in_flight, **self.health.snapshot(self.clock())}


class Upstream:
    """All endpoints of one cluster. `previous`: breaker states by URL to carry over (a reload)."""

    def __init__(self, name: str, credential: Credential, *, health: HealthSettings = HealthSettings(),
                 clock: Clock = time.monotonic, previous: Mapping[str, EndpointHealth] | None = None) -> None:
        self.name = name
        self.credential = credential
        self.health = health
        self._clock = clock
        self.endpoints = [Endpoint(url, credential, health=_carried(previous, url, health), clock=clock,
                                   cluster=name) for url in credential.servers]
        self._turn = itertools.count()
        self.on_close: list[Callable[[], Awaitable[None]]] = []
        """What else to stop with this upstream (its health checks)."""

    def pick(self, exclude: Collection[Endpoint] = ()) -> Endpoint | None:
        """The endpoint for the next request, not one of `exclude` (see guard.routing.balance)."""
        endpoints = self.endpoints
        n = len(endpoints)
        return balance.choose(endpoints, self._clock(), next(self._turn) % n if n else 0,
                              {id(ep) for ep in exclude} if exclude else ())

    def states(self) -> dict[str, EndpointHealth]:
        return {ep.url: ep.health for ep in self.endpoints}

    def snapshot(self) -> dict[str, Any]:
        """/debug/guard/upstreams: every endpoint's circuit, weight and load."""
        return {"cluster": self.name, "endpoints": [ep.snapshot() for ep in self.endpoints]}

    async def close(self) -> None:
        for stop in self.on_close:
            await stop()
        for ep in self.endpoints:
            ep.pool.close()
            await ep.session.close()


def _carried(previous: Mapping[str, EndpointHealth] | None, url: str,
             settings: HealthSettings) -> EndpointHealth:
    """The breaker of `url` from the last settings generation, with the new settings; else a new one."""
    health = previous.get(url) if previous else None
    if health is None:
        return EndpointHealth(settings)
    health.settings = settings
    return health


