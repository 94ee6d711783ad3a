"""The api-server endpoints of a cluster and guard's own credential to them.

Per endpoint, one lean keep-alive pool (`guard.http.client`) for ordinary requests and watches, and one
`aiohttp.ClientSession` for upgrades and reviews, both built once and reused by every request, and
its circuit breaker (`guard.routing.breaker`), fed by every connection outcome; endpoint choice is
`guard.routing.balance` (healthy first, least in flight, slow start). Reads credential files and
builds TLS contexts, and must never put a token or key material into a log line, an exception
message or a repr.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from guard.http import client as h1
from guard.identity.authn import HttpReviewClient
from guard.kube.errors import ConfigError, UpstreamError
from guard.routing import balance
from guard.routing.breaker import EndpointHealth
from guard.routing.config import HealthSettings
from guard.settings import ClusterSettings

log = logging.getLogger("guard.upstream.endpoints")
IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
CONNECT_TIMEOUT = 5.0
"""Seconds to open a TCP (+TLS) connection to an api-server before trying the next endpoint."""
KEEPALIVE = 30.0
"""Seconds an idle upstream connection is kept for reuse."""
FAILURES = (h1.ConnectFailed, h1.ConnectionBroken, h1.BadResponse, TimeoutError)
"""What the lean client raises when an endpoint, not the request, is at fault."""
Clock = Callable[[], float]


@dataclass(frozen=True)
class Credential:
    """guard's own identity towards the cluster: a token and/or a client certificate in `ssl`."""

    servers: tuple[str, ...]
    token: str | None = field(default=None, repr=False)
    ssl: ssl.SSLContext | None = field(default=None, repr=False)

    def auth_headers(self) -> tuple[tuple[str, str], ...]:
        return (("Authorization", f"Bearer {self.token}"),) if self.token else ()


class Endpoint:
    """One api-server URL with its own connection pool, in-flight count and circuit breaker."""

    def __init__(self, url: str, credential: Credential, *, health: EndpointHealth | None = None,
                 clock: Clock = time.monotonic, cluster: str = "") -> None:
        self.url = url
        self.cluster = cluster
        parts = urlsplit(url)
        self.base_path = parts.path.rstrip("/")
        self.in_flight = 0
        self.health = health or EndpointHealth(HealthSettings())
        self.clock = clock
        tls = (credential.ssl or ssl.create_default_context()) if parts.scheme == "https" else None
        self.host = parts.hostname or "localhost"
        self.pool = h1.Pool(self.host, parts.port or (443 if tls else 80), ssl_context=tls,
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

    async def request(self, method: str, head: bytes, body: h1.Body, *, chunked: bool,
                      read_timeout: float | None, retry_stale: bool) -> h1.Response:
        """`h1.Pool.request`, with its outcome told to the breaker."""
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


class FailoverReviews:
    """A ReviewClient that posts TokenReviews/SubjectAccessReviews to the least busy endpoint and
    tries the next one when an endpoint fails, so one dead api-server does not fail identity."""

    def __init__(self, upstream: Upstream, *, timeout: float) -> None:
        headers = dict(upstream.credential.auth_headers())
        self._upstream = upstream
        self._clients = {id(ep): HttpReviewClient(ep.session, ep.url, headers, timeout=timeout)
                         for ep in upstream.endpoints}

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._each(lambda c: c.create(path, body))

    async def get(self, path: str) -> dict[str, Any]:
        return await self._each(lambda c: c.get(path))

    async def _each(self, call: Callable[[HttpReviewClient], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        tried: list[Endpoint] = []
        error: UpstreamError | None = None
        while (ep := self._upstream.pick(tried)) is not None:
            try:
                answer = await call(self._clients[id(ep)])
            except UpstreamError as e:
                tried.append(ep)
                error = e
                if isinstance(e.__cause__, REVIEW_FAILURES):
                    ep.failed(type(e.__cause__).__name__)
                else:
                    ep.answered()  # an answer, if not a useful one: the endpoint is alive
                continue
            ep.answered()
            return answer
        raise error or UpstreamError(f"cluster {self._upstream.name} has no endpoint")


REVIEW_FAILURES = (aiohttp.ClientConnectionError, TimeoutError)
"""Review errors that say the endpoint, not the review, failed."""


def _carried(previous: Mapping[str, EndpointHealth] | None, url: str,
             settings: HealthSettings) -> EndpointHealth:
    """The breaker of `url` from the last settings generation, with the new settings; else a new one."""
    health = previous.get(url) if previous else None
    if health is None:
        return EndpointHealth(settings)
    health.settings = settings
    return health


def resolve_credential(cluster: ClusterSettings) -> Credential:
    """Read guard's credential from the sources the settings name. ConfigError names the field."""
    at = f"clusters[{cluster.name}]"
    token, servers, ctx = cluster.token, cluster.servers, None
    if cluster.token_file is not None:
        token = _read_text(cluster.token_file, f"{at}.tokenFile").strip()
    if cluster.kubeconfig is not None or cluster.in_cluster:
        token, servers, ctx = _from_kubeconfig(cluster, token, servers)
    if ctx is None:
        ctx = _ssl_context(cluster.ca_file, cluster.cert_file, cluster.key_file,
                           cluster.insecure_skip_tls_verify, at)
    return Credential(servers=tuple(servers), token=token or None, ssl=ctx)


def _from_kubeconfig(cluster: ClusterSettings, token: str | None,
                     servers: tuple[str, ...]) -> tuple[str | None, tuple[str, ...], ssl.SSLContext]:
    """Delegate to guard.upstream.kubeconfig (identity engineer) for kubeconfig and in-cluster credentials."""
    module: Any = importlib.import_module("guard.upstream.kubeconfig")
    if cluster.in_cluster:
        cred = module.in_cluster_credential()
    else:
        cred = module.load_credential(cluster.kubeconfig, cluster.context)
    servers = servers or (str(cred.server).rstrip("/"),)
    token = token or getattr(cred, "token", None)
    ctx = _ssl_from_data(getattr(cred, "ca_data", None), getattr(cred, "client_cert_data", None),
                         getattr(cred, "client_key_data", None), bool(getattr(cred, "insecure", False)),
                         cluster.ca_file, cluster.insecure_skip_tls_verify)
    return token, servers, ctx


def _ssl_context(ca_file: Path | None, cert_file: Path | None, key_file: Path | None, insecure: bool,
                 at: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file is not None and key_file is not None:
        try:
            ctx.load_cert_chain(str(cert_file), str(key_file))
        except (OSError, ssl.SSLError) as e:
            raise ConfigError([f"{at}.certFile: cannot load certificate and key: {type(e).__name__}"]) from e
    return ctx


def _ssl_from_data(ca: bytes | str | None, cert: bytes | str | None, key: bytes | str | None,
                   insecure: bool, ca_file: Path | None, insecure_override: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if ca and not ca_file:
        ctx.load_verify_locations(cadata=ca.decode() if isinstance(ca, bytes) else ca)
    if insecure or insecure_override:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert and key:
        _load_chain_from_memory(ctx, cert, key)
    return ctx


def _load_chain_from_memory(ctx: ssl.SSLContext, cert: bytes | str, key: bytes | str) -> None:
    """ssl only loads chains from files: write a private temporary file and remove it at once."""
    data = (cert if isinstance(cert, bytes) else cert.encode()) + b"\n" + (
        key if isinstance(key, bytes) else key.encode())
    fd, name = tempfile.mkstemp(prefix="guard-", suffix=".pem")
    try:
        os.write(fd, data)
        os.close(fd)
        ctx.load_cert_chain(name)
    finally:
        os.unlink(name)


def _read_text(path: Path, at: str) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise ConfigError([f"{at}: cannot read {path}: {e.strerror}"]) from e
