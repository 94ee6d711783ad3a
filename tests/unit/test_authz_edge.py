"""Edge authorization (guard.identity.authz): review attributes, the api-server's 403 shape, the allow/deny
caches with their TTLs, singleflight, fail-open on transport errors, and the `authorize:` settings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from guard import settings
from guard.identity.authz import (
    SAR_PATH,
    AuthorizeSettings,
    EdgeAuthorizer,
    attributes_of,
    build_authorizer,
    counters,
    review_body,
)
from guard.kube.errors import ConfigError, Forbidden, UpstreamError
from guard.kube.identity import Identity
from guard.kube.requestinfo import classify
from tests.doubles import FakeClock

MALLORY = Identity("mallory", ("system:authenticated",), uid="4")
ALICE = Identity("alice", ("team-a", "system:authenticated"), uid="2")
ON = AuthorizeSettings("subjectAccessReview")


class FakeReviews:
    """Answers SubjectAccessReviews from a set of allowed (user, verb, resource) and records them."""

    def __init__(self, allowed: set[tuple[str, str, str]] | None = None, *, reason: str = "") -> None:
        self.allowed = allowed or set()
        self.reason = reason
        self.bodies: list[dict[str, Any]] = []
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert path == SAR_PATH
        self.bodies.append(body)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise UpstreamError("POST subjectaccessreviews: ClientConnectorError")
        spec = body["spec"]
        attrs = spec.get("resourceAttributes") or spec["nonResourceAttributes"]
        what = attrs.get("resource", attrs.get("path", ""))
        ok = (spec["user"], attrs["verb"], what) in self.allowed
        status: dict[str, Any] = {"allowed": ok}
        if self.reason and not ok:
            status["reason"] = self.reason
        return {**body, "status": status}


def info(method: str, path: str, **query: str) -> Any:
    return classify(method, path, query)


ATTRIBUTE_TABLE = [
    # (method, path, query, expected spec)
    ("GET", "/api/v1/namespaces/default/pods", {},
     {"resourceAttributes": {"verb": "list", "group": "", "version": "v1", "resource": "pods",
                             "namespace": "default"}}),
    ("GET", "/api/v1/namespaces/default/pods/web-0/log", {},
     {"resourceAttributes": {"verb": "get", "group": "", "version": "v1", "resource": "pods",
                             "namespace": "default", "subresource": "log", "name": "web-0"}}),
    ("PATCH", "/apis/apps/v1/namespaces/team-a/deployments/api/scale", {},
     {"resourceAttributes": {"verb": "patch", "group": "apps", "version": "v1", "resource": "deployments",
                             "namespace": "team-a", "subresource": "scale", "name": "api"}}),
    ("GET", "/api/v1/nodes", {"watch": "true"},
     {"resourceAttributes": {"verb": "watch", "group": "", "version": "v1", "resource": "nodes"}}),
    ("DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterroles/edit", {},
     {"resourceAttributes": {"verb": "delete", "group": "rbac.authorization.k8s.io", "version": "v1",
                             "resource": "clusterroles", "name": "edit"}}),
    ("GET", "/api/v1/pods", {"fieldSelector": "spec.nodeName=n1", "labelSelector": "app=x"},
     {"resourceAttributes": {"verb": "list", "group": "", "version": "v1", "resource": "pods",
                             "labelSelector": {"rawSelector": "app=x"},
                             "fieldSelector": {"rawSelector": "spec.nodeName=n1"}}}),
    ("GET", "/metrics", {}, {"nonResourceAttributes": {"verb": "get", "path": "/metrics"}}),
    ("POST", "/logs/x", {}, {"nonResourceAttributes": {"verb": "post", "path": "/logs/x"}}),
]


@pytest.mark.parametrize(("method", "path", "query", "spec"), ATTRIBUTE_TABLE)
def test_attributes_are_what_the_api_server_authorizes(method: str, path: str, query: dict[str, str],
                                                      spec: dict[str, Any]) -> None:
    """Resource, subresource, cluster-scoped, selectors and non-resource requests become SAR attributes."""
    attrs = attributes_of(classify(method, path, query))
    assert attrs is not None
    assert attrs.spec() == spec


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api"), ("GET", "/apis"), ("GET", "/api/v1"), ("GET", "/apis/apps/v1"), ("GET", "/version"),
    ("GET", "/openapi/v3/apis/apps/v1"), ("GET", "/healthz"), ("GET", "/readyz"),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"),
    ("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews"),
    ("POST", "/api/v1/namespaces/default/pods/web-0/exec"),
])
def test_requests_everyone_may_make_or_that_hide_their_verb_are_not_reviewed(method: str, path: str) -> None:
    """Discovery, self reviews and connect subresources go to the api-server without a review."""
    assert attributes_of(classify(method, path, {})) is None


def test_a_review_asks_about_the_effective_identity_with_its_extra_and_uid() -> None:
    """An impersonated identity is reviewed as itself: user, groups, uid and extra."""
    who = Identity("system:serviceaccount:ci:bot", ("system:serviceaccounts", "system:authenticated"),
                   uid="u-9", extra=MappingProxyType({"scopes": ("a", "b")}))
    attrs = attributes_of(classify("GET", "/api/v1/namespaces/ci/secrets/s", {}))
    assert attrs is not None
    body = review_body(who, attrs)
    assert body["apiVersion"] == "authorization.k8s.io/v1" and body["kind"] == "SubjectAccessReview"
    assert body["spec"]["user"] == "system:serviceaccount:ci:bot"
    assert body["spec"]["groups"] == ["system:serviceaccounts", "system:authenticated"]
    assert body["spec"]["uid"] == "u-9" and body["spec"]["extra"] == {"scopes": ["a", "b"]}


DENIAL_TABLE = [
    ("GET", "/api/v1/namespaces/default/pods",
     'pods is forbidden: User "mallory" cannot list resource "pods" in API group "" '
     'in the namespace "default"',
     {"kind": "pods"}),
    ("GET", "/api/v1/namespaces/default/pods/web-0/log",
     'pods "web-0" is forbidden: User "mallory" cannot get resource "pods/log" in API group "" '
     'in the namespace "default"', {"kind": "pods", "name": "web-0"}),
    ("GET", "/apis/apps/v1/deployments",
     'deployments.apps is forbidden: User "mallory" cannot list resource "deployments" in API group "apps" '
     "at the cluster scope", {"kind": "deployments", "group": "apps"}),
    ("GET", "/metrics", 'forbidden: User "mallory" cannot get path "/metrics"', {}),
]


@pytest.mark.parametrize(("method", "path", "message", "details"), DENIAL_TABLE)
async def test_a_denial_is_the_api_servers_forbidden_status(method: str, path: str, message: str,
                                                           details: dict[str, str]) -> None:
    """The 403 carries the api-server's message and details, byte for byte."""
    authorizer = EdgeAuthorizer(FakeReviews(), ON)
    with pytest.raises(Forbidden) as caught:
        await authorizer.check(MALLORY, info(method, path))
    status = caught.value.status()
    assert caught.value.code == 403 and status["reason"] == "Forbidden"
    assert status["message"] == message and status["details"] == details


async def test_the_reviews_reason_is_appended_as_the_api_server_does() -> None:
    """A reason in the review (e.g. a missing role) ends the message after a colon."""
    authorizer = EdgeAuthorizer(FakeReviews(reason='RBAC: role "x" not found'), ON)
    with pytest.raises(Forbidden, match=r'namespace "default": RBAC: role "x" not found$'):
        await authorizer.check(MALLORY, info("GET", "/api/v1/namespaces/default/pods"))


async def test_a_denial_is_cached_for_the_deny_ttl_then_a_new_grant_applies() -> None:
    """1,000 forbidden calls cost one review; after denyTTL a granted role takes effect."""
    reviews, clock = FakeReviews(), FakeClock()
    authorizer = EdgeAuthorizer(reviews, AuthorizeSettings("subjectAccessReview", deny_ttl=30.0), clock=clock)
    pods = info("GET", "/api/v1/namespaces/default/pods")
    for _ in range(1000):
        with pytest.raises(Forbidden):
            await authorizer.check(MALLORY, pods)
    assert len(reviews.bodies) == 1
    reviews.allowed.add(("mallory", "list", "pods"))
    clock.now += 29.0
    with pytest.raises(Forbidden):
        await authorizer.check(MALLORY, pods)
    clock.now += 1.5
    await authorizer.check(MALLORY, pods)
    assert len(reviews.bodies) == 2
    assert counters(authorizer.stats) == {"subject_access_reviews": 2, "cache_hits": 1000, "allowed": 1,
                                    "denied": 1001, "exempt": 0, "errors": 0}


async def test_an_allow_is_cached_for_the_longer_allow_ttl() -> None:
    """Allowed answers live allowTTL, independently of the deny TTL."""
    reviews, clock = FakeReviews({("alice", "get", "pods")}), FakeClock()
    ttls = AuthorizeSettings("subjectAccessReview", allow_ttl=300.0, deny_ttl=5.0)
    authorizer = EdgeAuthorizer(reviews, ttls, clock=clock)
    pod = info("GET", "/api/v1/namespaces/team-a/pods/p")
    for _ in range(100):
        await authorizer.check(ALICE, pod)
        clock.now += 2.0  # 200 s in all: past the deny TTL, within the allow TTL
    assert len(reviews.bodies) == 1
    clock.now += 101.0
    await authorizer.check(ALICE, pod)
    assert len(reviews.bodies) == 2


async def test_answers_are_kept_per_identity_and_attributes() -> None:
    """Another user, group set, namespace or verb is another review."""
    reviews = FakeReviews({("alice", "list", "pods")})
    authorizer = EdgeAuthorizer(reviews, ON)
    await authorizer.check(ALICE, info("GET", "/api/v1/namespaces/a/pods"))
    await authorizer.check(ALICE, info("GET", "/api/v1/namespaces/b/pods"))
    await authorizer.check(Identity("alice", ("other",)), info("GET", "/api/v1/namespaces/a/pods"))
    with pytest.raises(Forbidden):
        await authorizer.check(MALLORY, info("GET", "/api/v1/namespaces/a/pods"))
    with pytest.raises(Forbidden):
        await authorizer.check(ALICE, info("DELETE", "/api/v1/namespaces/a/pods/x"))
    assert len(reviews.bodies) == 5


async def test_the_cache_is_a_bounded_lru() -> None:
    """Past cacheSize the least recently used answer goes first and costs a review again."""
    reviews = FakeReviews()
    authorizer = EdgeAuthorizer(reviews, AuthorizeSettings("subjectAccessReview", cache_size=2))
    a, b, c = (info("GET", f"/api/v1/namespaces/{ns}/pods") for ns in "abc")
    for request in (a, b, a, c, a, b):  # c evicts b (a was used more recently); b evicts c
        with pytest.raises(Forbidden):
            await authorizer.check(MALLORY, request)
    asked = [body["spec"]["resourceAttributes"]["namespace"] for body in reviews.bodies]
    assert asked == ["a", "b", "c", "b"]


async def test_concurrent_identical_requests_share_one_review() -> None:
    """Singleflight: 50 requests waiting on the same question send one review."""
    reviews = FakeReviews()
    reviews.gate = asyncio.Event()
    authorizer = EdgeAuthorizer(reviews, ON)
    pods = info("GET", "/api/v1/namespaces/default/pods")
    tasks = [asyncio.ensure_future(authorizer.check(MALLORY, pods)) for _ in range(50)]
    await asyncio.sleep(0)
    reviews.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, Forbidden) for r in results)
    assert len(reviews.bodies) == 1


async def test_a_transport_error_fails_open_is_counted_and_never_cached() -> None:
    """When the review cannot be made the request is forwarded; the next request asks again."""
    reviews = FakeReviews()
    reviews.fail = True
    authorizer = EdgeAuthorizer(reviews, ON)
    pods = info("GET", "/api/v1/namespaces/default/pods")
    await authorizer.check(MALLORY, pods)
    await authorizer.check(MALLORY, pods)
    assert authorizer.stats.errors == 2 and len(reviews.bodies) == 2
    reviews.fail = False
    with pytest.raises(Forbidden):
        await authorizer.check(MALLORY, pods)


async def test_exempt_requests_send_no_review() -> None:
    """Discovery costs no review, and is counted as exempt."""
    reviews = FakeReviews()
    authorizer = EdgeAuthorizer(reviews, ON)
    for path in ("/api", "/apis/apps/v1", "/version"):
        await authorizer.check(MALLORY, info("GET", path))
    assert reviews.bodies == [] and authorizer.stats.exempt == 3


def test_off_builds_no_authorizer() -> None:
    """mode off (the default) leaves the request path without the step."""
    assert build_authorizer(AuthorizeSettings(), FakeReviews()) is None
    assert isinstance(build_authorizer(ON, FakeReviews()), EdgeAuthorizer)
    assert counters(None) == {}


BASE = "listen: 127.0.0.1:0\nclusters:\n  - name: dev\n    server: http://127.0.0.1:1\n    token: t\n"


def _load(tmp_path: Path, authorize: str) -> settings.Settings:
    path = tmp_path / "guard.yaml"
    path.write_text(BASE + authorize)
    return settings.load(path)


def test_authorize_defaults_to_off(tmp_path: Path) -> None:
    """Without the section nothing changes for existing users."""
    assert _load(tmp_path, "").cluster.authorize == AuthorizeSettings(mode="off")


def test_authorize_settings_are_read_with_durations(tmp_path: Path) -> None:
    """mode, allowTTL/denyTTL (seconds or 30s/5m/1h) and cacheSize."""
    section = "{mode: subjectAccessReview, allowTTL: 5m, denyTTL: 20, cacheSize: 50}"
    loaded = _load(tmp_path, f"    authorize: {section}\n")
    assert loaded.cluster.authorize == AuthorizeSettings("subjectAccessReview", 300.0, 20.0, 50)


@pytest.mark.parametrize(("section", "problem"), [
    ("{mode: rbac}", "clusters[0].authorize.mode: must be one of off, subjectAccessReview"),
    ("{mode: subjectAccessReview, denyTtl: 30s}",
     "clusters[0].authorize.denyTtl: unknown field (did you mean denyTTL?)"),
    ("{allowTTL: -1}", "clusters[0].authorize.allowTTL: must be a number of seconds > 0"),
    ("{denyTTL: soon}", "clusters[0].authorize.denyTTL: must be a number of seconds > 0 or a duration"),
    ("{cacheSize: 0}", "clusters[0].authorize.cacheSize: must be an integer >= 1"),
    ("true", "clusters[0].authorize: must be a mapping"),
])
def test_bad_authorize_settings_name_file_and_field(tmp_path: Path, section: str, problem: str) -> None:
    """Every problem names the file and the field; unknown keys are errors."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"    authorize: {section}\n")
    assert any(p.startswith(f"{tmp_path / 'guard.yaml'}:6: {problem}") for p in caught.value.problems), \
        caught.value.problems
