"""Who is calling: client certificates, bearer tokens (TokenReview or local JWKS) → `Identity`.

Token answers are cached under a keyed BLAKE2b hash of the token (per-process random key): tokens the
api-server accepted in one LRU (`cacheSize`, reused for `tokenReviewTTL`), rejected ones in another
(`failureCacheSize`, `failureTTL`), so a flood of garbage tokens can never push a good one out; at
most one review is in flight per token. A token guard has never seen costs a review made with
guard's own credential, so those reviews spend a budget per client address and overall
(`reviewBudget`, guard.identity.budget): when it is spent the caller gets 429 with Retry-After and
no review is made. A token that was valid before and has expired is reviewed again without
spending the budget. Transport errors are never cached. This module must never log, keep or put
into an error a raw token: only its keyed hash outlives the call.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

import aiohttp
from cryptography import x509
from cryptography.x509.oid import NameOID

from guard.identity.budget import Rate, ReviewBudget, retry_after
from guard.identity.jwks import JwksSource, JwtRejected, identity_from_claims, verify_jwt
from guard.identity.settings import IdentitySettings, parse_identity
from guard.kube.errors import TooManyRequests, Unauthorized, UpstreamError
from guard.kube.identity import ANONYMOUS, AUTHENTICATED_GROUP, Identity

__all__ = [
    "Authenticator", "AuthnStats", "Credentials", "HttpReviewClient", "IdentitySettings",
    "JwksSource", "Rate", "ReviewClient", "bearer_token", "parse_identity",
]

TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


class Credentials(NamedTuple):
    """What the caller presented. The TLS layer has already verified the certificate chain.
    An immutable NamedTuple (one per request) whose repr never shows the token or certificate."""

    bearer_token: str | None
    peer_certificate_der: bytes | None
    remote_addr: str = ""

    def __repr__(self) -> str:
        return f"Credentials(remote_addr={self.remote_addr!r})"


class ReviewClient(Protocol):
    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a review object with guard's own credential; UpstreamError on transport failure,
        TooManyRequests when the api-server sheds it."""
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
                if response.status == 429:  # the api-server sheds guard's reviews: the caller waits too
                    raise TooManyRequests("the cluster is busy, please try again later",
                                          retry_after=_retry_after(response.headers.get("Retry-After")))
                if response.status >= 300:
                    raise UpstreamError(f"{method} {path}: upstream answered {response.status}")
                answer = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            raise UpstreamError(f"{method} {path}: {type(e).__name__}") from e
        if not isinstance(answer, dict):
            raise UpstreamError(f"{method} {path}: answer is not a JSON object")
        return answer


def _retry_after(header: str | None) -> int:
    return max(1, min(60, int(header))) if header is not None and header.isdigit() else 1


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization` header as the api-server's bearer authenticator reads it:
    trimmed, split on single spaces into at most three parts, the second one if the first is
    `bearer` in any case. `Bearer a b` is the token `a`; `Bearer  a` (two spaces) none."""
    parts = (header or "").strip().split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer":
        return None
    return parts[1] or None


@dataclass
class AuthnStats:
    """Counters the proxy exports as metrics (monotonic; read them, never reset them)."""

    cache_hits: int = 0
    cache_misses: int = 0
    token_reviews: int = 0
    local_verifications: int = 0
    failures: int = 0
    errors: int = 0
    review_budget_rejections: int = 0
    """Callers answered 429 because their (or everyone's) TokenReview budget was spent."""
    impersonation_refusals: int = 0
    """Impersonating requests refused before review: too many groups or extras, or review budget spent."""


@dataclass(frozen=True)
class _Entry:
    identity: Identity | None  # None: the token was rejected
    expires: float


class Authenticator:
    """Turns `Credentials` into an `Identity` or raises `Unauthorized` (or `TooManyRequests` when
    the caller's review budget is spent)."""

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
        self._good: OrderedDict[bytes, _Entry] = OrderedDict()
        """Tokens the api-server accepted; kept past expiry (LRU) as known good, to re-review freely."""
        self._bad: OrderedDict[bytes, _Entry] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Task[_Entry]] = {}
        budget = settings.review_budget
        self._budget = ReviewBudget(budget.per_client, budget.overall, clock=clock)

    async def authenticate(self, creds: Credentials) -> Identity:
        if creds.peer_certificate_der is not None:
            return identity_from_certificate(creds.peer_certificate_der)
        if creds.bearer_token:
            return await self._from_token(creds.bearer_token, creds.remote_addr)
        if self.settings.anonymous:
            return ANONYMOUS
        raise Unauthorized("Unauthorized")

    async def _from_token(self, token: str, client: str) -> Identity:
        # Keyed BLAKE2b: a MAC like HMAC-SHA256 at a fraction of its cost on every request.
        digest = hashlib.blake2b(token.encode(), key=self._key, digest_size=16).digest()
        entry = self._cached(digest)
        if entry is None:
            entry = await self._shared_lookup(digest, token, client)
        if entry.identity is None:
            raise Unauthorized("Unauthorized")
        return entry.identity

    def _cached(self, digest: bytes) -> _Entry | None:
        now = self._clock()
        for cache in (self._good, self._bad):
            entry = cache.get(digest)
            if entry is not None and entry.expires > now:
                cache.move_to_end(digest)
                self.stats.cache_hits += 1
                return entry
        self.stats.cache_misses += 1
        return None

    async def _shared_lookup(self, digest: bytes, token: str, client: str) -> _Entry:
        task = self._inflight.get(digest)
        if task is None:
            known = digest in self._good  # valid before: re-reviewed without spending the budget
            if not known and self._jwks is None:
                self._take(client)
            task = asyncio.ensure_future(self._lookup(digest, token, client, known=known))
            self._inflight[digest] = task
            task.add_done_callback(lambda t: self._settled(digest, t))
        # shield: one waiter giving up (client gone) must not cancel the review the others wait on
        return await asyncio.shield(task)

    def _take(self, client: str) -> None:
        """Take one review from the caller's budget; TooManyRequests when it is spent."""
        wait = self._budget.take(client)
        if wait > 0:
            self.stats.review_budget_rejections += 1
            raise TooManyRequests("Too many new credentials from this client, please try again later.",
                                  retry_after=retry_after(wait))

    def _settled(self, digest: bytes, task: asyncio.Task[_Entry]) -> None:
        self._inflight.pop(digest, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone, which is no error of ours

    async def _lookup(self, digest: bytes, token: str, client: str, *, known: bool) -> _Entry:
        try:
            identity, ttl = await self._verify(token, client, known=known)
        except UpstreamError:
            self.stats.errors += 1
            raise
        entry = _Entry(identity, self._clock() + ttl)
        if identity is None:
            self.stats.failures += 1
            self._good.pop(digest, None)
            self._keep(self._bad, digest, entry, self.settings.failure_cache_size)
        else:
            self._bad.pop(digest, None)
            self._keep(self._good, digest, entry, self.settings.cache_size)
        return entry

    @staticmethod
    def _keep(cache: OrderedDict[bytes, _Entry], digest: bytes, entry: _Entry, size: int) -> None:
        cache[digest] = entry
        cache.move_to_end(digest)
        while len(cache) > size:
            cache.popitem(last=False)

    async def _verify(self, token: str, client: str, *, known: bool) -> tuple[Identity | None, float]:
        if self._jwks is not None:
            local = await self._verify_locally(token)
            if local is not None:
                return local  # verified or rejected locally: no review, no budget spent
            if not known:
                self._take(client)
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
