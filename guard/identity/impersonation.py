"""Impersonation safety: inbound `Impersonate-*` headers are honoured only after SubjectAccessReviews.

Mirrors the api-server's impersonation filter: one review (verb `impersonate`) per requested user or
service account, group, uid and extra value, and the same resulting user (system:authenticated added,
service-account groups defaulted) and the same 403 message. Answers are cached per (caller, target).
Each review is made with guard's credential, so the work is bounded before any is made (a request
with 64 groups and 180 extras once cost 245 reviews): at most `maxGroups` groups and
`maxExtraValues` extra values (else 400), targets reviewed one after the other, user first, stopping
at the first denial, at most `maxReviewsPerRequest` uncached reviews per request and a budget of
reviews per caller (else 429 with Retry-After; what was reviewed stays cached for the retry).
It also writes the headers guard itself sends in impersonate mode. It must never trust an inbound
`Impersonate-*` or `X-Remote-*` header without a review: the proxy strips them all after `resolve`
(guard.http.headers.forwardable).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote

from guard.identity.authn import AuthnStats, ReviewClient
from guard.identity.budget import ReviewBudget, retry_after
from guard.identity.settings import IdentitySettings
from guard.kube.errors import BadRequest, Forbidden, TooManyRequests
from guard.kube.identity import (
    ANONYMOUS_USER,
    AUTHENTICATED_GROUP,
    SERVICE_ACCOUNT_PREFIX,
    UNAUTHENTICATED_GROUP,
    Identity,
)

SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
EXTRA_PREFIX = "impersonate-extra-"
@dataclass(frozen=True)
class Target:
    """One thing the caller asks to impersonate, as the SubjectAccessReview's resource attributes."""

    resource: str
    name: str
    group: str = ""
    namespace: str = ""
    subresource: str = ""

    def attributes(self) -> dict[str, str]:
        attrs = {"verb": "impersonate", "group": self.group, "resource": self.resource, "name": self.name}
        optional = (("namespace", self.namespace), ("subresource", self.subresource))
        attrs.update({k: v for k, v in optional if v})
        return attrs

    def denial(self, caller: str, reason: str) -> str:
        """The api-server's Forbidden message for this target."""
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        scope = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        qualified = f"{self.resource}.{self.group}" if self.group else self.resource
        message = (f'{qualified} "{self.name}" is forbidden: User "{caller}" cannot impersonate resource '
                   f'"{resource}" in API group "{self.group}" {scope}')
        return f"{message}: {reason}" if reason else message


@dataclass(frozen=True)
class Asked:
    """What the inbound `Impersonate-*` headers ask for."""

    user: str
    groups: tuple[str, ...]
    uid: str | None
    extra: Mapping[str, tuple[str, ...]]

    def targets(self) -> list[Target]:
        sa = _service_account(self.user)
        first = (Target("serviceaccounts", sa[1], namespace=sa[0]) if sa else Target("users", self.user))
        return [first, *(Target("groups", g) for g in self.groups),
                *([Target("uids", self.uid, "authentication.k8s.io")] if self.uid is not None else []),
                *(Target("userextras", v, "authentication.k8s.io", subresource=k)
                  for k, vs in self.extra.items() for v in vs)]

    def identity(self) -> Identity:
        """The user the api-server would make of this request."""
        groups = list(self.groups)
        sa = _service_account(self.user)
        if sa and not groups:
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{sa[0]}"]
        if self.user != ANONYMOUS_USER:
            if AUTHENTICATED_GROUP not in groups and UNAUTHENTICATED_GROUP not in groups:
                groups.append(AUTHENTICATED_GROUP)
        elif UNAUTHENTICATED_GROUP not in groups:
            groups.append(UNAUTHENTICATED_GROUP)
        return Identity(user=self.user, groups=tuple(groups), uid=self.uid or "",
                        extra=MappingProxyType(dict(self.extra)))


def _service_account(user: str) -> tuple[str, str] | None:
    return Identity(user).service_account if user.startswith(SERVICE_ACCOUNT_PREFIX) else None


def parse_asked(headers: Any, *, max_groups: int = 32, max_extra_values: int = 32) -> Asked | None:
    """The impersonation asked for by `headers` (a Mapping or a multidict), or None when none is;
    BadRequest for a malformed or oversized ask."""
    users, groups, uids = [], [], []
    extra: dict[str, list[str]] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower == "impersonate-user":
            users.append(value)
        elif lower == "impersonate-group":
            groups.append(value)
        elif lower == "impersonate-uid":
            uids.append(value)
        elif lower.startswith(EXTRA_PREFIX):
            extra.setdefault(unquote(lower[len(EXTRA_PREFIX):]), []).append(value)
    if not (users or groups or uids or extra):
        return None
    if len(users) != 1 or not users[0] or len(uids) > 1:
        raise BadRequest("impersonation requires exactly one non-empty Impersonate-User header "
                         "and at most one Impersonate-Uid")
    if len(groups) > max_groups:
        raise BadRequest(f"too many Impersonate-Group headers (at most {max_groups})")
    if sum(len(v) for v in extra.values()) > max_extra_values:
        raise BadRequest(f"too many Impersonate-Extra-* values (at most {max_extra_values})")
    return Asked(users[0], tuple(groups), uids[0] if uids else None,
                   MappingProxyType({k: tuple(v) for k, v in extra.items()}))


@dataclass(frozen=True)
class _Verdict:
    allowed: bool
    reason: str
    expires: float


CacheKey = tuple[str, tuple[str, ...], str, tuple[tuple[str, tuple[str, ...]], ...], Target]


class ImpersonationCheck:
    """Decides whether `caller` may impersonate what the inbound headers ask, with cached reviews."""

    def __init__(self, reviews: ReviewClient, *, ttl: float = 60.0, deny_ttl: float = 10.0,
                 settings: IdentitySettings | None = None, stats: AuthnStats | None = None,
                 cache_size: int = 10000, clock: Callable[[], float] = time.monotonic) -> None:
        self._reviews = reviews
        self._ttl, self._deny_ttl = ttl, deny_ttl
        identity = settings or IdentitySettings()
        self._bounds = identity.impersonation
        self._budget = ReviewBudget(self._bounds.per_caller, identity.review_budget.overall, clock=clock)
        self.stats = stats or AuthnStats()
        """Shared with the cluster's authenticator, so refusals are counted with identity's."""
        self._cache_size = cache_size
        self._clock = clock
        self._cache: OrderedDict[CacheKey, _Verdict] = OrderedDict()
        self._inflight: dict[CacheKey, asyncio.Task[_Verdict]] = {}
        self.reviews_sent = 0

    async def resolve(self, caller: Identity, headers: Any) -> Identity:
        """`caller` itself, or the impersonated Identity; BadRequest/Forbidden when not allowed,
        TooManyRequests when the request would cost more reviews than it may."""
        try:
            request = parse_asked(headers, max_groups=self._bounds.max_groups,
                                  max_extra_values=self._bounds.max_extra_values)
        except BadRequest:
            self.stats.impersonation_refusals += 1
            raise
        if request is None:
            return caller
        fresh = 0
        for target in request.targets():  # one at a time, user first: the first denial ends it
            key: CacheKey = (caller.user, caller.groups, caller.uid, tuple(sorted(caller.extra.items())),
                             target)
            verdict = self._cached(key)
            if verdict is None:
                if key not in self._inflight:
                    self._spend(caller, fresh)
                    fresh += 1
                verdict = await self._verdict(key, caller, target)
            if not verdict.allowed:
                raise Forbidden(target.denial(caller.user, verdict.reason))
        return request.identity()

    def _spend(self, caller: Identity, fresh: int) -> None:
        """Allow one more uncached review for this request, or refuse it (429)."""
        wait = 0.0 if fresh < self._bounds.max_reviews_per_request else 1.0
        if not wait:
            wait = self._budget.take(caller.user)
        if wait:
            self.stats.impersonation_refusals += 1
            raise TooManyRequests("Too many impersonation checks for this request, please try again later.",
                                  retry_after=retry_after(wait))

    def _cached(self, key: CacheKey) -> _Verdict | None:
        cached = self._cache.get(key)
        if cached is not None and cached.expires > self._clock():
            self._cache.move_to_end(key)
            return cached
        return None

    async def _verdict(self, key: CacheKey, caller: Identity, target: Target) -> _Verdict:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._review(key, caller, target))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._settled(key, t))
        return await asyncio.shield(task)

    def _settled(self, key: CacheKey, task: asyncio.Task[_Verdict]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone, which is no error of ours

    async def _review(self, key: CacheKey, caller: Identity, target: Target) -> _Verdict:
        spec = {"user": caller.user, "groups": list(caller.groups), "uid": caller.uid,
                "extra": {k: list(v) for k, v in caller.extra.items()},
                "resourceAttributes": target.attributes()}
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        self.reviews_sent += 1
        status = (await self._reviews.create(SAR_PATH, body)).get("status") or {}
        allowed = bool(status.get("allowed")) and not status.get("denied")
        ttl = self._ttl if allowed else self._deny_ttl
        verdict = _Verdict(allowed, str(status.get("reason") or ""), self._clock() + ttl)
        self._cache[key] = verdict
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return verdict


# Go's header token characters (httpguts): anything else in an extra key is percent-encoded, as
# client-go does, and so is '%' itself so that the api-server's PathUnescape round-trips it.
_TOKEN_CHARS = frozenset("!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def escape_extra_key(key: str) -> str:
    return "".join(chr(b) if chr(b) in _TOKEN_CHARS else f"%{b:02X}" for b in key.encode())


def impersonation_headers(identity: Identity) -> list[tuple[str, str]]:
    """The headers guard adds, with its own credential, to act as `identity` upstream."""
    headers = [("Impersonate-User", identity.user)]
    headers += [("Impersonate-Group", g) for g in identity.groups]
    if identity.uid:
        headers.append(("Impersonate-Uid", identity.uid))
    headers += [(f"Impersonate-Extra-{escape_extra_key(k)}", v) for k, vs in sorted(identity.extra.items())
                for v in vs]
    return headers

