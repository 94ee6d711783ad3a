"""Who is calling: client certificates, bearer tokens (TokenReview or local JWKS) → `Identity`.

Token answers are cached under a keyed BLAKE2b hash of the token (per-process random key), successes for
`token_review_ttl`, failures briefly, with at most one review in flight per token, so a client
hammering with a bad token reaches the api-server about once per failure TTL. Transport errors are
never cached. This module must never log, keep or put into an error a raw token: only its keyed hash
outlives the call.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Protocol

import aiohttp
from cryptography import x509
from cryptography.x509.oid import NameOID

from guard.identity.jwks import JwksSource, JwtRejected, identity_from_claims, verify_jwt
from guard.kube.errors import Unauthorized, UpstreamError
from guard.kube.identity import ANONYMOUS, AUTHENTICATED_GROUP, Identity

__all__ = [
    "Authenticator", "AuthnStats", "Credentials", "HttpReviewClient", "IdentitySettings",
    "JwksSource", "ReviewClient", "parse_identity",
]

TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


@dataclass(frozen=True)
class Credentials:
    """What the caller presented. The TLS layer has already verified the certificate chain."""

    bearer_token: str | None = field(repr=False)
    peer_certificate_der: bytes | None = field(repr=False)
    remote_addr: str = ""


class ReviewClient(Protocol):
    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a review object with guard's own credential; UpstreamError on transport failure."""
        ...


class HttpReviewClient:
    """Posts reviews (and reads discovery documents) over one shared aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str,
                 headers: Mapping[str, str] | Callable[[], Mapping[str, str]], *,
                 timeout: float = 10.0) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = headers
        """guard's credential: fixed, or read per call (a token an exec plugin renews)."""
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", path, body)

    async def get(self, path: str) -> dict[str, Any]:
        """GET a JSON document (the JWKS source's `fetch`)."""
        return await self._call("GET", path, None)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        try:
            headers = self._headers() if callable(self._headers) else self._headers
            async with self._session.request(method, self._base + path, json=body, headers=headers,
                                             timeout=self._timeout) as response:
                if response.status >= 300:
                    raise UpstreamError(f"{method} {path}: upstream answered {response.status}")
                answer = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            raise UpstreamError(f"{method} {path}: {type(e).__name__}") from e
        if not isinstance(answer, dict):
            raise UpstreamError(f"{method} {path}: answer is not a JSON object")
        return answer


@dataclass(frozen=True)
class IdentitySettings:
    token_review_ttl: float = 120.0
    """Seconds a successful token answer is reused. Longer means fewer reviews, slower revocation."""
    failure_ttl: float = 10.0
    """Seconds an invalid token's rejection is reused, so a retrying client cannot flood reviews."""
    cache_size: int = 10000
    """Most tokens remembered at once (least recently used go first)."""
    jwks: bool = False
    """Verify service-account JWTs locally against the cluster's JWKS instead of a TokenReview."""
    anonymous: bool = False
    """Callers without credentials become system:anonymous instead of getting 401."""
    audiences: tuple[str, ...] = ()
    """Audiences tokens must carry; empty means the cluster's default (its issuer)."""


def parse_identity(raw: object, where: str) -> tuple[IdentitySettings, list[str]]:
    """The `identity:` settings section, and every problem in it, each naming `where.field`."""
    if raw is None:
        return IdentitySettings(), []
    if not isinstance(raw, dict):
        return IdentitySettings(), [f"{where}: must be a mapping"]
    known = {f.name: f for f in fields(IdentitySettings)}
    aliases = {_camel(name): name for name in known}
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        name = aliases.get(key, key if key in known else None)
        if name is None:
            problems.append(f"{where}.{key}: unknown field")
            continue
        problem = _check_field(name, value)
        if problem:
            problems.append(f"{where}.{key}: {problem}")
        else:
            values[name] = tuple(value) if name == "audiences" else value
    return (IdentitySettings(**values) if not problems else IdentitySettings()), problems


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _check_field(name: str, value: object) -> str | None:
    if name in ("jwks", "anonymous"):
        return None if isinstance(value, bool) else "must be true or false"
    if name == "audiences":
        ok = isinstance(value, list) and all(isinstance(v, str) and v for v in value)
        return None if ok else "must be a list of non-empty strings"
    if name == "cache_size":
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        return None if ok else "must be a positive integer"
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    return None if ok else "must be a number of seconds >= 0"


@dataclass
class AuthnStats:
    """Counters the proxy exports as metrics (monotonic; read them, never reset them)."""

    cache_hits: int = 0
    cache_misses: int = 0
    token_reviews: int = 0
    local_verifications: int = 0
    failures: int = 0
    errors: int = 0


@dataclass(frozen=True)
class _Entry:
    identity: Identity | None  # None: the token was rejected
    expires: float


class Authenticator:
    """Turns `Credentials` into an `Identity` or raises `Unauthorized`."""

    def __init__(self, settings: IdentitySettings, reviews: ReviewClient, *,
                 clock: Callable[[], float] = time.monotonic, jwks_source: JwksSource | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.stats = AuthnStats()
        self._reviews = reviews
        self._clock = clock
        self._wall_clock = wall_clock
        self._jwks = jwks_source if settings.jwks else None
        self._key = os.urandom(32)
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Task[_Entry]] = {}

    async def authenticate(self, creds: Credentials) -> Identity:
        if creds.peer_certificate_der is not None:
            return identity_from_certificate(creds.peer_certificate_der)
        if creds.bearer_token:
            return await self._from_token(creds.bearer_token)
        if self.settings.anonymous:
            return ANONYMOUS
        raise Unauthorized("Unauthorized")

    async def _from_token(self, token: str) -> Identity:
        # Keyed BLAKE2b: a MAC like HMAC-SHA256 at a fraction of its cost on every request.
        digest = hashlib.blake2b(token.encode(), key=self._key, digest_size=16).digest()
        entry = self._cached(digest)
        if entry is None:
            entry = await self._shared_lookup(digest, token)
        if entry.identity is None:
            raise Unauthorized("Unauthorized")
        return entry.identity

    def _cached(self, digest: bytes) -> _Entry | None:
        entry = self._cache.get(digest)
        if entry is None or entry.expires <= self._clock():
            self.stats.cache_misses += 1
            return None
        self._cache.move_to_end(digest)
        self.stats.cache_hits += 1
        return entry

    async def _shared_lookup(self, digest: bytes, token: str) -> _Entry:
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._lookup(digest, token))
            self._inflight[digest] = task
            task.add_done_callback(lambda t: self._settled(digest, t))
        # shield: one waiter giving up (client gone) must not cancel the review the others wait on
        return await asyncio.shield(task)

    def _settled(self, digest: bytes, task: asyncio.Task[_Entry]) -> None:
        self._inflight.pop(digest, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone, which is no error of ours

    async def _lookup(self, digest: bytes, token: str) -> _Entry:
        try:
            identity, ttl = await self._verify(token)
        except UpstreamError:
            self.stats.errors += 1
            raise
        if identity is None:
            self.stats.failures += 1
        entry = _Entry(identity, self._clock() + ttl)
        self._cache[digest] = entry
        self._cache.move_to_end(digest)
        while len(self._cache) > self.settings.cache_size:
            self._cache.popitem(last=False)
        return entry

    async def _verify(self, token: str) -> tuple[Identity | None, float]:
        if self._jwks is not None:
            local = await self._verify_locally(token)
            if local is not None:
                return local
        return await self._token_review(token)

    async def _verify_locally(self, token: str) -> tuple[Identity | None, float] | None:
        """Verified locally, rejected locally, or None: not one of the cluster's JWTs, ask TokenReview."""
        assert self._jwks is not None
        now = self._wall_clock()
        try:
            claims = await verify_jwt(token, self._jwks, audiences=self.settings.audiences, now=now)
        except JwtRejected:
            self.stats.local_verifications += 1
            return None, self.settings.failure_ttl
        if claims is None:
            return None
        self.stats.local_verifications += 1
        ttl = min(self.settings.token_review_ttl, max(0.0, float(claims["exp"]) - now))
        return identity_from_claims(claims), ttl

    async def _token_review(self, token: str) -> tuple[Identity | None, float]:
        spec: dict[str, Any] = {"token": token}
        if self.settings.audiences:
            spec["audiences"] = list(self.settings.audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        self.stats.token_reviews += 1
        answer = await self._reviews.create(TOKEN_REVIEW_PATH, body)
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            return None, self.settings.failure_ttl
        return identity_from_user_info(status.get("user") or {}), self.settings.token_review_ttl


def identity_from_user_info(user: Mapping[str, Any]) -> Identity:
    """An Identity from a TokenReview's `status.user`."""
    extra = {str(k): tuple(str(v) for v in vs) for k, vs in (user.get("extra") or {}).items()}
    return Identity(user=str(user.get("username", "")), groups=tuple(user.get("groups") or ()),
                    uid=str(user.get("uid", "")), extra=MappingProxyType(extra))


def identity_from_certificate(der: bytes) -> Identity:
    """CN = user, each O = a group, as the api-server's x509 authenticator reads a client certificate."""
    try:
        subject = x509.load_der_x509_certificate(der).subject
    except ValueError as e:
        raise Unauthorized("Unauthorized") from e
    names = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if not names or not names[0]:
        raise Unauthorized("Unauthorized")
    groups = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if AUTHENTICATED_GROUP not in groups:
        groups.append(AUTHENTICATED_GROUP)
    return Identity(user=names[0], groups=tuple(groups))
