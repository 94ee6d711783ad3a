"""The authenticator: certificate users, the TokenReview cache, singleflight, the LRU bound, anonymous."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from guard.cli.certs import make_ca, make_client_cert
from guard.identity.authn import Authenticator, Credentials, IdentitySettings, parse_identity
from guard.identity.budget import Rate
from guard.identity.settings import ImpersonationSettings, ReviewBudgetSettings
from guard.kube.errors import Unauthorized, UpstreamError
from guard.kube.identity import ANONYMOUS
from tests.doubles import FakeClock


class FakeReviews:
    """Answers TokenReviews from a table of good tokens and counts every call."""

    def __init__(self, good: dict[str, str], *, delay: float = 0.0) -> None:
        self.good = good
        self.calls = 0
        self.delay = delay
        self.fail = False
        self.bodies: list[dict[str, Any]] = []

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        self.bodies.append(body)
        assert path == "/apis/authentication.k8s.io/v1/tokenreviews"
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise UpstreamError("connection refused")
        user = self.good.get(body["spec"]["token"])
        if user is None:
            return {"status": {"authenticated": False, "error": "invalid bearer token"}}
        return {"status": {"authenticated": True, "user": {
            "username": user, "uid": "u-1", "groups": ["dev", "system:authenticated"],
            "extra": {"scopes": ["a", "b"]}}}}


def token(t: str) -> Credentials:
    return Credentials(bearer_token=t, peer_certificate_der=None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def reviews() -> FakeReviews:
    return FakeReviews({"good": "alice", "other": "bob"})


def make(reviews: FakeReviews, clock: FakeClock, **settings: Any) -> Authenticator:
    return Authenticator(IdentitySettings(**settings), reviews, clock=clock)


async def test_token_review_answer_becomes_the_identity(reviews: FakeReviews, clock: FakeClock) -> None:
    """A good token yields the user, uid, groups and extra the TokenReview returned."""
    who = await make(reviews, clock).authenticate(token("good"))
    assert (who.user, who.uid, who.groups) == ("alice", "u-1", ("dev", "system:authenticated"))
    assert dict(who.extra) == {"scopes": ("a", "b")}
    assert reviews.bodies[0]["kind"] == "TokenReview"


async def test_success_is_cached_until_its_ttl(reviews: FakeReviews, clock: FakeClock) -> None:
    """Repeated calls within the TTL are cache hits; after it, one new review."""
    authn = make(reviews, clock, token_review_ttl=120.0)
    for _ in range(50):
        await authn.authenticate(token("good"))
    assert reviews.calls == 1
    assert (authn.stats.cache_hits, authn.stats.cache_misses) == (49, 1)
    clock.now += 121
    await authn.authenticate(token("good"))
    assert reviews.calls == 2


async def test_failures_are_cached_for_the_failure_ttl(reviews: FakeReviews, clock: FakeClock) -> None:
    """A bad token is reviewed once per failure TTL however often it is sent."""
    authn = make(reviews, clock, failure_ttl=10.0)
    for _ in range(100):
        with pytest.raises(Unauthorized):
            await authn.authenticate(token("bad"))
    assert reviews.calls == 1
    clock.now += 11
    with pytest.raises(Unauthorized):
        await authn.authenticate(token("bad"))
    assert reviews.calls == 2
    assert authn.stats.failures == 2


async def test_transport_errors_are_not_cached(reviews: FakeReviews, clock: FakeClock) -> None:
    """An unreachable api-server is not remembered as a verdict: the next call asks again."""
    authn = make(reviews, clock)
    reviews.fail = True
    with pytest.raises(UpstreamError):
        await authn.authenticate(token("good"))
    reviews.fail = False
    assert (await authn.authenticate(token("good"))).user == "alice"
    assert reviews.calls == 2


async def test_concurrent_calls_share_one_review(clock: FakeClock) -> None:
    """Many simultaneous calls with one uncached token send one TokenReview (singleflight)."""
    reviews = FakeReviews({"good": "alice"}, delay=0.01)
    authn = make(reviews, clock)
    results = await asyncio.gather(*(authn.authenticate(token("good")) for _ in range(200)))
    assert {r.user for r in results} == {"alice"}
    assert reviews.calls == 1


async def test_a_cancelled_waiter_does_not_cancel_the_shared_review(clock: FakeClock) -> None:
    """One client going away mid-review leaves the other waiters with their answer."""
    reviews = FakeReviews({"good": "alice"}, delay=0.02)
    authn = make(reviews, clock)
    first = asyncio.ensure_future(authn.authenticate(token("good")))
    second = asyncio.ensure_future(authn.authenticate(token("good")))
    await asyncio.sleep(0.005)
    first.cancel()
    assert (await second).user == "alice"
    assert reviews.calls == 1


async def test_cache_is_bounded_least_recently_used_first(clock: FakeClock) -> None:
    """With cache_size 2, a third token evicts the least recently used one."""
    reviews = FakeReviews({"a": "alice", "b": "bob", "c": "carol"})
    authn = make(reviews, clock, cache_size=2)
    await authn.authenticate(token("a"))
    await authn.authenticate(token("b"))
    await authn.authenticate(token("a"))  # a is now the most recent
    await authn.authenticate(token("c"))  # evicts b
    assert reviews.calls == 3
    await authn.authenticate(token("a"))
    assert reviews.calls == 3
    await authn.authenticate(token("b"))
    assert reviews.calls == 4


async def test_cache_never_holds_the_raw_token(reviews: FakeReviews, clock: FakeClock) -> None:
    """Cache keys are keyed hashes: the token's bytes appear nowhere in the cache."""
    authn = make(reviews, clock)
    await authn.authenticate(token("good"))
    assert all(b"good" not in key for key in [*authn._good, *authn._bad])
    assert "good" not in repr(token("good"))


async def test_audiences_are_sent_with_the_review(reviews: FakeReviews, clock: FakeClock) -> None:
    """Configured audiences go into the TokenReview spec."""
    await make(reviews, clock, audiences=("guard",)).authenticate(token("good"))
    assert reviews.bodies[0]["spec"]["audiences"] == ["guard"]


async def test_no_credentials(reviews: FakeReviews, clock: FakeClock) -> None:
    """No credentials: 401, or system:anonymous where configured — without any review."""
    with pytest.raises(Unauthorized):
        await make(reviews, clock).authenticate(Credentials(None, None))
    assert await make(reviews, clock, anonymous=True).authenticate(Credentials(None, None)) == ANONYMOUS
    assert reviews.calls == 0


async def test_client_certificate_gives_cn_and_o(reviews: FakeReviews, clock: FakeClock) -> None:
    """CN is the user, each O a group, plus system:authenticated; no review is sent."""
    ca = make_ca()
    cert = make_client_cert(ca, "carol", ["ops", "dev"])
    who = await make(reviews, clock).authenticate(Credentials(None, cert.cert_der()))
    assert who.user == "carol"
    assert who.groups == ("ops", "dev", "system:authenticated")
    assert reviews.calls == 0


@pytest.mark.parametrize(("raw", "problem"), [
    ({"tokenReviewTtl2": 3}, 'identity.tokenReviewTtl2: unknown field "tokenReviewTtl2" '
     '(did you mean "tokenReviewTtl"?)'),
    ({"failureTTL": -1}, "identity.failureTTL: -1 is not a duration like 30s, 5m"),
    ({"reviewBudget": {"perClient": {"rate": "fast"}}}, "identity.reviewBudget.perClient.rate: "
     '"fast" is not a rate like 20/s, 3000/m'),
    ({"reviewBudget": {"overall": {"burst": 0}}},
     "identity.reviewBudget.overall.burst: must be at least 1"),
    ({"reviewBudget": {"total": {}}}, 'identity.reviewBudget.total: unknown field "total"'),
    ({"impersonation": {"maxGroups": 0}}, "identity.impersonation.maxGroups: must be at least 1"),
    ({"impersonation": {"perCaler": {}}}, 'identity.impersonation.perCaler: unknown field "perCaler" '
     '(did you mean "perCaller"?)'),
    ({"cacheSize": 0}, "identity.cacheSize: must be at least 1"),
    ({"jwks": "yes"}, "identity.jwks: must be true or false"),
    ({"audiences": "guard"}, "identity.audiences: must be a list of strings"),
    ([1], "identity: must be a mapping"),
])
def test_parse_identity_names_the_field(raw: object, problem: str) -> None:
    """Each bad identity section is reported with its field path."""
    assert parse_identity(raw, "identity")[1] == [problem]


def test_parse_identity_reads_every_field() -> None:
    """The documented keys (tokenReviewTTL, failureTTL, ...) set the settings; durations are read."""
    settings, problems = parse_identity(
        {"tokenReviewTTL": "2m", "failureTTL": 1, "cacheSize": 7, "failureCacheSize": 9, "jwks": True,
         "anonymous": True, "audiences": ["a"],
         "reviewBudget": {"perClient": {"rate": "2/s", "burst": 4}, "overall": {"rate": "30/m"}},
         "impersonation": {"maxGroups": 3, "maxExtraValues": 4, "maxReviewsPerRequest": 5,
                           "perCaller": {"rate": "1/s", "burst": 6}}}, "identity")
    assert problems == []
    assert settings == IdentitySettings(
        120.0, 1, 7, 9, True, True, ("a",), ReviewBudgetSettings(Rate(2.0, 4.0), Rate(0.5, 1.0)),
        ImpersonationSettings(3, 4, 5, Rate(1.0, 6.0)))


def test_parse_identity_still_reads_the_spellings_it_read_before() -> None:
    """tokenReviewTtl / failureTtl and snake_case keys, which earlier versions accepted, still work."""
    settings, problems = parse_identity({"tokenReviewTtl": 5, "failure_ttl": 1}, "identity")
    assert problems == []
    assert (settings.token_review_ttl, settings.failure_ttl) == (5, 1)
