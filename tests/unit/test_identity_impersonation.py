"""Impersonation: who may act as whom, the resulting user, the 403 message, and guard's own headers."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import pytest
from multidict import CIMultiDict

from guard.http.headers import is_identity_header
from guard.identity.impersonation import (
    ImpersonationCheck,
    escape_extra_key,
    impersonation_headers,
    parse_asked,
)
from guard.kube.errors import BadRequest, Forbidden
from guard.kube.identity import Identity
from tests.doubles import FakeClock

MALLORY = Identity("mallory", ("dev", "system:authenticated"))
ADMIN = Identity("admin", ("system:masters", "system:authenticated"))


class FakeSar:
    """Allows admin everything; allows mallory only to impersonate the group 'viewers'."""

    def __init__(self) -> None:
        self.specs: list[dict[str, Any]] = []

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert path == "/apis/authorization.k8s.io/v1/subjectaccessreviews"
        spec = body["spec"]
        self.specs.append(spec)
        attrs = spec["resourceAttributes"]
        assert attrs["verb"] == "impersonate"
        allowed = spec["user"] == "admin" or (attrs["resource"], attrs["name"]) == ("groups", "viewers")
        return {"status": {"allowed": allowed}}


def headers(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


async def test_no_impersonation_headers_is_the_caller() -> None:
    """Without Impersonate-* headers the caller stays the caller and no review is sent."""
    sar = FakeSar()
    assert await ImpersonationCheck(sar).resolve(MALLORY, headers(("Accept", "json"))) is MALLORY
    assert sar.specs == []


@pytest.mark.parametrize(("caller", "pairs", "message"), [
    (MALLORY, [("Impersonate-User", "system:admin")],
     'users "system:admin" is forbidden: User "mallory" cannot impersonate resource "users" in API group "" '
     "at the cluster scope"),
    (MALLORY, [("Impersonate-User", "system:serviceaccount:kube-system:default")],
     'serviceaccounts "default" is forbidden: User "mallory" cannot impersonate resource "serviceaccounts" '
     'in API group "" in the namespace "kube-system"'),
    (MALLORY, [("Impersonate-User", "mallory"), ("Impersonate-Group", "viewers"),
               ("Impersonate-Group", "system:masters")],
     'users "mallory" is forbidden: User "mallory" cannot impersonate resource "users" in API group "" '
     "at the cluster scope"),
])
async def test_denied_impersonation_is_forbidden(caller: Identity, pairs: list[tuple[str, str]],
                                                 message: str) -> None:
    """Any denied attribute gives 403 with the api-server's message."""
    with pytest.raises(Forbidden) as raised:
        await ImpersonationCheck(FakeSar()).resolve(caller, headers(*pairs))
    assert raised.value.message == message
    assert raised.value.status()["code"] == 403


async def test_denied_extra_names_its_subresource() -> None:
    """A denied extra names resource userextras/<key> in authentication.k8s.io."""
    class DenyExtras(FakeSar):
        async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
            resource = body["spec"]["resourceAttributes"]["resource"]
            return {"status": {"allowed": resource != "userextras"}}

    with pytest.raises(Forbidden) as raised:
        await ImpersonationCheck(DenyExtras()).resolve(
            ADMIN, headers(("Impersonate-User", "bob"), ("Impersonate-Extra-Scopes", "view")))
    assert raised.value.message == (
        'userextras.authentication.k8s.io "view" is forbidden: User "admin" cannot impersonate resource '
        '"userextras/scopes" in API group "authentication.k8s.io" at the cluster scope')


@pytest.mark.parametrize(("pairs", "expected"), [
    ([("Impersonate-User", "bob")], Identity("bob", ("system:authenticated",))),
    ([("Impersonate-User", "bob"), ("Impersonate-Group", "a"), ("Impersonate-Group", "b")],
     Identity("bob", ("a", "b", "system:authenticated"))),
    ([("Impersonate-User", "bob"), ("Impersonate-Group", "system:unauthenticated")],
     Identity("bob", ("system:unauthenticated",))),
    ([("Impersonate-User", "system:anonymous")], Identity("system:anonymous", ("system:unauthenticated",))),
    ([("Impersonate-User", "system:serviceaccount:ns:sa")],
     Identity("system:serviceaccount:ns:sa",
              ("system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"))),
    ([("Impersonate-User", "bob"), ("Impersonate-Uid", "u-7")],
     Identity("bob", ("system:authenticated",), "u-7")),
])
async def test_allowed_impersonation_yields_the_api_servers_user(pairs: list[tuple[str, str]],
                                                                  expected: Identity) -> None:
    """The impersonated user gets the groups the api-server would give it."""
    assert await ImpersonationCheck(FakeSar()).resolve(ADMIN, headers(*pairs)) == expected


async def test_one_review_per_attribute_then_cached() -> None:
    """User, each group, uid and each extra value are reviewed once; repeats come from the cache."""
    sar = FakeSar()
    clock = FakeClock(0.0)
    check = ImpersonationCheck(sar, ttl=60.0, clock=clock)
    pairs = headers(("Impersonate-User", "bob"), ("Impersonate-Group", "a"), ("Impersonate-Group", "b"),
                    ("Impersonate-Uid", "u"), ("Impersonate-Extra-Example.com%2Fscopes", "x"))
    who = await check.resolve(ADMIN, pairs)
    assert dict(who.extra) == {"example.com/scopes": ("x",)}
    resources = sorted(s["resourceAttributes"]["resource"] for s in sar.specs)
    assert resources == ["groups", "groups", "uids", "userextras", "users"]
    assert sar.specs[0]["user"] == "admin"
    for _ in range(10):
        await check.resolve(ADMIN, pairs)
    assert len(sar.specs) == 5
    clock.now += 61
    await check.resolve(ADMIN, pairs)
    assert len(sar.specs) == 10


async def test_denials_are_cached_for_the_deny_ttl() -> None:
    """A caller retrying a forbidden impersonation is reviewed once per deny TTL."""
    sar = FakeSar()
    clock = FakeClock(0.0)
    check = ImpersonationCheck(sar, deny_ttl=5.0, clock=clock)
    for _ in range(20):
        with pytest.raises(Forbidden):
            await check.resolve(MALLORY, headers(("Impersonate-User", "system:admin")))
    assert len(sar.specs) == 1
    clock.now += 6
    with pytest.raises(Forbidden):
        await check.resolve(MALLORY, headers(("Impersonate-User", "system:admin")))
    assert len(sar.specs) == 2


@pytest.mark.parametrize("pairs", [
    [("Impersonate-Group", "system:masters")],
    [("Impersonate-User", "a"), ("Impersonate-User", "b")],
    [("Impersonate-User", "")],
    [("Impersonate-User", "a")] + [("Impersonate-Group", f"g{i}") for i in range(65)],
])
async def test_malformed_requests_are_bad_requests(pairs: list[tuple[str, str]]) -> None:
    """Groups without a user, two users, an empty user, or too many groups: 400, no review."""
    sar = FakeSar()
    with pytest.raises(BadRequest):
        await ImpersonationCheck(sar).resolve(ADMIN, headers(*pairs))
    assert sar.specs == []


def test_plain_mapping_headers_are_read_case_insensitively() -> None:
    """A dict with lower-case names is understood like a multidict."""
    request = parse_asked({"impersonate-user": "bob", "IMPERSONATE-EXTRA-A%2fB": "v"})
    assert request is not None
    assert (request.user, dict(request.extra)) == ("bob", {"a/b": ("v",)})


@pytest.mark.parametrize(("key", "escaped"), [
    ("scopes", "scopes"),
    ("example.com/scopes", "example.com%2Fscopes"),
    ("100%", "100%25"),
    ("a b=c", "a%20b%3Dc"),
    ("ünï", "%C3%BCn%C3%AF"),
])
def test_extra_keys_are_escaped_like_client_go(key: str, escaped: str) -> None:
    """Extra keys are percent-encoded as client-go does, and unescape back to the key."""
    assert escape_extra_key(key) == escaped
    assert unquote(escaped) == key


def test_impersonation_headers_carry_the_whole_identity() -> None:
    """User, each group, uid and each extra value become headers the api-server reads back."""
    who = Identity("alice", ("dev", "system:authenticated"), "u-1",
                   {"example.com/scopes": ("a", "b"), "plain": ("c",)})
    assert impersonation_headers(who) == [
        ("Impersonate-User", "alice"), ("Impersonate-Group", "dev"),
        ("Impersonate-Group", "system:authenticated"), ("Impersonate-Uid", "u-1"),
        ("Impersonate-Extra-example.com%2Fscopes", "a"), ("Impersonate-Extra-example.com%2Fscopes", "b"),
        ("Impersonate-Extra-plain", "c"),
    ]
    round_trip = parse_asked(CIMultiDict(impersonation_headers(who)))
    assert round_trip is not None and round_trip.identity() == who


@pytest.mark.parametrize(("name", "stripped"), [
    ("Impersonate-User", True), ("impersonate-group", True), ("Impersonate-Extra-Foo", True),
    ("Impersonate-Uid", True), ("X-Remote-User", True), ("x-remote-extra-scopes", True),
    ("X-Remote-Group", True), ("Authorization", False), ("X-Forwarded-For", False),
])
def test_inbound_identity_headers_are_stripped(name: str, stripped: bool) -> None:
    """Every header that could smuggle an identity is on the strip list; ordinary ones are not."""
    assert is_identity_header(name) is stripped
