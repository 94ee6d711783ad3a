"""Edge authorization: deny at the edge what RBAC would deny, from cached SubjectAccessReviews.

For each request of a cluster with `authorize: {mode: subjectAccessReview}`, ask the api-server
once per TTL whether the effective identity (after impersonation) may do what the request asks,
and answer a denial with the api-server's own 403 Status, so a client retrying a forbidden call
forever reaches the api-server about once per deny TTL instead of on every attempt. Allow and deny
answers are cached separately, keyed by a hash of (user, groups, uid, extra, attributes), in a
bounded LRU with one review in flight per key. It must never grant anything — an allow only means
"forward", and the api-server authorizes the request again — so a review that cannot be made
(transport error) fails open, is counted, and is never cached. It runs past 300 lines because
the review, its two caches and the one-in-flight rule are one mechanism, kept in one place.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from guard.kube.errors import Forbidden, GuardError, Status
from guard.kube.identity import Identity
from guard.kube.requestinfo import RequestInfo

log = logging.getLogger(__name__)

SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
MODES = ("off", "subjectAccessReview")
AUTHORIZE_KEYS = ("mode", "allowTTL", "denyTTL", "cacheSize")

# Non-resource paths the default `system:discovery` and `system:public-info-viewer` roles let every
# authenticated user GET: a review of them would be a wasted call.
_DISCOVERY_PATHS = frozenset({"/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi"})
_DISCOVERY_PREFIXES = ("/api/", "/apis/", "/openapi/", "/version/", "/healthz/", "/livez/", "/readyz/")
# Reviews of oneself, which `system:basic-user` lets every authenticated user create.
_SELF_REVIEWS = frozenset({("authorization.k8s.io", "selfsubjectaccessreviews"),
                           ("authorization.k8s.io", "selfsubjectrulesreviews"),
                           ("authentication.k8s.io", "selfsubjectreviews")})
_SELECTOR_VERBS = frozenset({"list", "watch", "deletecollection"})


@dataclass(frozen=True)
class AuthorizeSettings:
    """A cluster's `authorize:` section."""

    mode: str = "off"
    """off (forward everything; the api-server decides) or subjectAccessReview (deny at the edge)."""
    allow_ttl: float = 300.0
    """Seconds an allow answer is reused. It only saves reviews: allowed requests are authorized again."""
    deny_ttl: float = 30.0
    """Seconds a deny answer is reused: how long a newly granted RoleBinding may take to apply."""
    cache_size: int = 10000
    """Most answers remembered at once (least recently used go first)."""

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


T = TypeVar("T", bound=str)


class Fields(Protocol):
    """guard.config.fields.Fields' shape (named here so this module stays free of settings I/O)."""

    def error(self, at: str, message: str) -> None: ...
    def mapping(self, raw: object, at: str, known: Sequence[str], *,
                required: Sequence[str] = ()) -> Mapping[str, object]: ...
    def choice(self, raw: object, at: str, choices: tuple[T, ...]) -> T: ...
    def integer(self, raw: object, at: str, *, minimum: int) -> int: ...
    def seconds(self, raw: object, at: str) -> float: ...


def parse_authorize(f: Fields, raw: object, at: str) -> AuthorizeSettings:
    """The `authorize:` section of a cluster; every problem goes to `f`, naming `at.field`."""
    if raw is None:
        return AuthorizeSettings()
    d = AuthorizeSettings()
    m = f.mapping(raw, at, AUTHORIZE_KEYS)
    return AuthorizeSettings(
        mode=f.choice(m.get("mode", d.mode), f"{at}.mode", MODES),
        allow_ttl=f.seconds(m.get("allowTTL", d.allow_ttl), f"{at}.allowTTL"),
        deny_ttl=f.seconds(m.get("denyTTL", d.deny_ttl), f"{at}.denyTTL"),
        cache_size=f.integer(m.get("cacheSize", d.cache_size), f"{at}.cacheSize", minimum=1),
    )



@dataclass(frozen=True)
class Attributes:
    """What a request asks, as a SubjectAccessReview's resourceAttributes or nonResourceAttributes."""

    verb: str
    resource_request: bool = True
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    label_selector: str = ""
    field_selector: str = ""

    def spec(self) -> dict[str, Any]:
        """The attribute part of a SubjectAccessReview's spec."""
        if not self.resource_request:
            return {"nonResourceAttributes": {"verb": self.verb, "path": self.path}}
        attrs: dict[str, Any] = {"verb": self.verb, "group": self.group, "resource": self.resource}
        optional = (("version", self.version), ("namespace", self.namespace),
                    ("subresource", self.subresource), ("name", self.name))
        attrs.update({k: v for k, v in optional if v})
        # Since 1.31 authorizers may decide on selectors (the node authorizer lets a kubelet list
        # its own pods by spec.nodeName): a review without them could deny what the request may do.
        if self.label_selector:
            attrs["labelSelector"] = {"rawSelector": self.label_selector}
        if self.field_selector:
            attrs["fieldSelector"] = {"rawSelector": self.field_selector}
        return {"resourceAttributes": attrs}

    def denial(self, user: str, reason: str) -> str:
        """The api-server's Forbidden message (k8s.io/apiserver responsewriters.forbiddenMessage)."""
        if not self.resource_request:
            message = f'forbidden: User "{user}" cannot {self.verb} path "{self.path}"'
        else:
            full = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
            scope = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
            qualified = f"{self.resource}.{self.group}" if self.group else self.resource
            subject = f'{qualified} "{self.name}"' if self.name else qualified
            message = (f'{subject} is forbidden: User "{user}" cannot {self.verb} resource "{full}" '
                       f'in API group "{self.group}" {scope}')
        return f"{message}: {reason}" if reason else message

    def details(self) -> dict[str, str]:
        """The Status details of the api-server's Forbidden (empty fields are omitted, as in Go)."""
        found = (("name", self.name), ("group", self.group), ("kind", self.resource))
        return {k: v for k, v in found if v} if self.resource_request else {}


def attributes_of(info: RequestInfo) -> Attributes | None:
    """The review attributes of a request, or None when it needs no review (exempt)."""
    if not info.is_resource_request:
        if info.verb == "get" and _is_discovery(info.path):
            return None
        return Attributes(verb=info.verb, resource_request=False, path=info.path)
    # guard's own `connect` verb hides the HTTP method the api-server authorizes exec/attach/
    # port-forward/proxy by; those are rare and long-running, so they go to the api-server unchecked.
    if info.verb in ("", "connect"):
        return None
    if info.verb == "create" and (info.api_group, info.resource) in _SELF_REVIEWS:
        return None
    selectors = info.verb in _SELECTOR_VERBS
    return Attributes(
        verb=info.verb, group=info.api_group, version=info.api_version, resource=info.resource,
        subresource=info.subresource, namespace=info.namespace, name=info.name,
        label_selector=info.label_selector if selectors else "",
        field_selector=info.field_selector if selectors else "")


def _is_discovery(path: str) -> bool:
    return path in _DISCOVERY_PATHS or path.startswith(_DISCOVERY_PREFIXES)


def review_body(identity: Identity, attrs: Attributes) -> dict[str, Any]:
    """The SubjectAccessReview asking whether `identity` may do `attrs`."""
    spec = {"user": identity.user, "groups": list(identity.groups),
            "extra": {k: list(v) for k, v in identity.extra.items()}, **attrs.spec()}
    if identity.uid:
        spec["uid"] = identity.uid
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


class EdgeForbidden(Forbidden):
    """A denial at the edge, with the details the api-server's own 403 carries."""

    def __init__(self, message: str, details: dict[str, str]) -> None:
        super().__init__(message)
        self.details = details

    def status(self) -> Status:
        body = super().status()
        body["details"] = dict(self.details)  # type: ignore[typeddict-item]
        return body


class Reviews(Protocol):
    """guard.identity.authn.ReviewClient's shape: POST a review with guard's credential."""

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class AuthzStats:
    """Counters the proxy exports as `guard_authz_*` (monotonic; read them, never reset them)."""

    subject_access_reviews: int = 0
    cache_hits: int = 0
    allowed: int = 0
    denied: int = 0
    exempt: int = 0
    errors: int = 0


@dataclass(frozen=True)
class _Verdict:
    allowed: bool
    reason: str
    expires: float


class EdgeAuthorizer:
    """Raises the api-server's Forbidden for what a SubjectAccessReview denies; forwards the rest."""

    def __init__(self, reviews: Reviews, settings: AuthorizeSettings, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.stats = AuthzStats()
        self._reviews = reviews
        self._clock = clock
        self._cache: OrderedDict[bytes, _Verdict] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Task[_Verdict]] = {}

    async def check(self, identity: Identity, info: RequestInfo) -> None:
        attrs = attributes_of(info)
        if attrs is None:
            self.stats.exempt += 1
            return
        key = _key(identity, attrs)
        verdict = self._cached(key)
        if verdict is None:
            try:
                verdict = await self._shared_review(key, identity, attrs)
            except GuardError:
                return  # fail open: counted in _review; the api-server still authorizes
        if verdict.allowed:
            self.stats.allowed += 1
            return
        self.stats.denied += 1
        raise EdgeForbidden(attrs.denial(identity.user, verdict.reason), attrs.details())

    def _cached(self, key: bytes) -> _Verdict | None:
        verdict = self._cache.get(key)
        if verdict is None:
            return None
        if verdict.expires <= self._clock():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        self.stats.cache_hits += 1
        return verdict

    async def _shared_review(self, key: bytes, identity: Identity, attrs: Attributes) -> _Verdict:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._review(key, identity, attrs))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._settled(key, t))
        # shield: one waiter giving up (client gone) must not cancel the review the others wait on
        return await asyncio.shield(task)

    def _settled(self, key: bytes, task: asyncio.Task[_Verdict]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone, which is no error of ours

    async def _review(self, key: bytes, identity: Identity, attrs: Attributes) -> _Verdict:
        self.stats.subject_access_reviews += 1
        try:
            answer = await self._reviews.create(SAR_PATH, review_body(identity, attrs))
        except GuardError as e:
            self.stats.errors += 1
            if self.stats.errors & (self.stats.errors - 1) == 0:  # 1st, 2nd, 4th, 8th...: no log flood
                log.warning("SubjectAccessReview failed, forwarding unchecked (%d so far): %s",
                            self.stats.errors, e.message)
            raise
        status = answer.get("status") or {}
        allowed = bool(status.get("allowed")) and not status.get("denied")
        ttl = self.settings.allow_ttl if allowed else self.settings.deny_ttl
        verdict = _Verdict(allowed, str(status.get("reason") or ""), self._clock() + ttl)
        self._cache[key] = verdict
        self._cache.move_to_end(key)
        while len(self._cache) > self.settings.cache_size:
            self._cache.popitem(last=False)
        return verdict


def _key(identity: Identity, attrs: Attributes) -> bytes:
    # repr of str tuples is unambiguous, so distinct (identity, attributes) never share a key
    extra = tuple(sorted(identity.extra.items()))
    text = repr((identity.user, identity.groups, identity.uid, extra, attrs))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def build_authorizer(settings: AuthorizeSettings, reviews: Reviews) -> EdgeAuthorizer | None:
    """The cluster's authorizer, or None when `mode: off` (the request path then skips the step)."""
    return EdgeAuthorizer(reviews, settings) if settings.enabled else None


def counters(stats: AuthzStats | None) -> dict[str, int]:
    """An authorizer's stats for guard.telemetry.metrics' `add_counters` ({} when off)."""
    return dataclasses.asdict(stats) if stats is not None else {}
