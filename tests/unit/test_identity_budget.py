"""TokenReview amplification (issue 13, item 1): reviews of unseen tokens spend a budget per client
address and overall; a spent budget is a 429 with Retry-After and no review; garbage tokens can
never push a good token out of the cache, and a good token whose entry expired is re-reviewed
without spending the budget. The bearer token is read as the api-server reads it."""

from __future__ import annotations

import pytest

from guard.identity.authn import Authenticator, Credentials, bearer_token
from guard.identity.budget import Rate, ReviewBudget, retry_after
from guard.identity.settings import IdentitySettings, ReviewBudgetSettings
from guard.kube.errors import TooManyRequests, Unauthorized
from tests.doubles import FakeClock
from tests.unit.test_identity_authn import FakeReviews

PER_CLIENT, OVERALL = Rate(2.0, 5.0), Rate(10.0, 20.0)


def make(reviews: FakeReviews, clock: FakeClock, **settings: object) -> Authenticator:
    budget = ReviewBudgetSettings(PER_CLIENT, OVERALL)
    return Authenticator(IdentitySettings(review_budget=budget, **settings), reviews,  # type: ignore[arg-type]
                         clock=clock)


def from_(address: str, token: str) -> Credentials:
    return Credentials(bearer_token=token, peer_certificate_der=None, remote_addr=address)


async def outcome(authn: Authenticator, creds: Credentials) -> int:
    try:
        await authn.authenticate(creds)
    except Unauthorized:
        return 401
    except TooManyRequests as e:
        assert e.retry_after is not None and e.retry_after >= 1
        return 429
    return 200


async def test_one_client_cannot_make_more_reviews_than_its_budget() -> None:
    """100 new garbage tokens from one address: burst 5 reviewed (401), 95 refused with 429, none reviewed."""
    reviews, clock = FakeReviews({}), FakeClock()
    authn = make(reviews, clock)
    answers = [await outcome(authn, from_("10.0.0.1", f"junk-{i}")) for i in range(100)]
    assert (answers.count(401), answers.count(429)) == (5, 95)
    assert reviews.calls == 5
    assert authn.stats.review_budget_rejections == 95


async def test_the_budget_refills_at_its_rate() -> None:
    """After 10 s at 2/s, one client may cause 5 more reviews (its burst), not 20."""
    reviews, clock = FakeReviews({}), FakeClock()
    authn = make(reviews, clock)
    for i in range(10):
        await outcome(authn, from_("10.0.0.1", f"a-{i}"))
    clock.advance(10)
    answers = [await outcome(authn, from_("10.0.0.1", f"b-{i}")) for i in range(10)]
    assert answers.count(401) == 5 and reviews.calls == 10


async def test_many_clients_together_stay_within_the_overall_budget() -> None:
    """50 addresses x 4 new tokens within one instant: the overall burst (20) is reviewed, no more."""
    reviews, clock = FakeReviews({}), FakeClock()
    authn = make(reviews, clock)
    for i in range(200):
        await outcome(authn, from_(f"10.0.{i % 50}.1", f"junk-{i}"))
    assert reviews.calls == 20


async def test_cached_answers_and_shared_reviews_cost_no_budget() -> None:
    """A valid token sent 1,000 times and a bad one retried 1,000 times cost one review each."""
    reviews, clock = FakeReviews({"good": "alice"}), FakeClock()
    authn = make(reviews, clock)
    for _ in range(1000):
        assert await outcome(authn, from_("10.0.0.1", "good")) == 200
        assert await outcome(authn, from_("10.0.0.1", "bad")) == 401
    assert reviews.calls == 2 and authn.stats.review_budget_rejections == 0


async def test_garbage_never_evicts_a_good_token() -> None:
    """With caches of 10, 10,000 garbage tokens (from many addresses, over time) leave the good
    token cached: it is never reviewed again within its TTL."""
    reviews, clock = FakeReviews({"good": "alice"}), FakeClock()
    authn = make(reviews, clock, cache_size=10, failure_cache_size=10, token_review_ttl=10_000.0)
    await authn.authenticate(from_("10.0.0.9", "good"))
    for i in range(10_000):
        clock.advance(0.5)
        await outcome(authn, from_(f"10.1.{i % 250}.{i % 7}", f"junk-{i}"))
    calls = reviews.calls
    assert await outcome(authn, from_("10.0.0.9", "good")) == 200
    assert reviews.calls == calls and len(authn._bad) == 10


async def test_a_known_good_token_is_re_reviewed_even_when_its_client_spent_the_budget() -> None:
    """alice's token expired while her address (a shared NAT) is out of budget: it is reviewed
    again and she passes; a new token from that address still gets 429."""
    reviews, clock = FakeReviews({"good": "alice"}), FakeClock()
    authn = make(reviews, clock, token_review_ttl=60.0)
    assert await outcome(authn, from_("10.0.0.1", "good")) == 200
    clock.advance(61)
    for i in range(20):
        await outcome(authn, from_("10.0.0.1", f"junk-{i}"))
    assert await outcome(authn, from_("10.0.0.1", "good")) == 200
    assert await outcome(authn, from_("10.0.0.1", "junk-new")) == 429


async def test_a_revoked_token_loses_its_free_re_review() -> None:
    """Once the api-server rejects a formerly good token it counts as any new token again."""
    reviews, clock = FakeReviews({"good": "alice"}), FakeClock()
    authn = make(reviews, clock, token_review_ttl=60.0, failure_ttl=1.0)
    await authn.authenticate(from_("10.0.0.1", "good"))
    reviews.good.clear()
    clock.advance(61)
    assert await outcome(authn, from_("10.0.0.1", "good")) == 401
    assert not authn._good


def test_a_budget_remembers_a_bounded_number_of_clients() -> None:
    """Forgetting the oldest clients only refills their bucket: the overall bucket still holds."""
    clock = FakeClock()
    budget = ReviewBudget(Rate(1.0, 1.0), Rate(1.0, 3.0), clock=clock)
    waits = [budget.take(f"c{i}") for i in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0] and all(w > 0 for w in waits[3:])


@pytest.mark.parametrize(("wait", "header"), [(0.01, 1), (2.2, 3), (1e9, 60), (float("inf"), 60)])
def test_retry_after_is_a_whole_number_of_seconds_within_a_minute(wait: float, header: int) -> None:
    """client-go waits only for an integer Retry-After."""
    assert retry_after(wait) == header


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer abc", "abc"),
    ("bearer abc", "abc"),
    ("BEARER abc  ", "abc"),
    ("  Bearer abc", "abc"),
    ("Bearer a b", "a"),  # the api-server takes the second of at most three space-separated parts
    ("Bearer  abc", None),  # two spaces: an empty token, as the api-server reads it
    ("Bearer", None),
    ("Basic dXNlcjpwYXNz", None),
    ("Bearer\tabc", None),
    ("", None),
    (None, None),
])
def test_the_bearer_token_is_read_as_the_api_server_reads_it(header: str | None, token: str | None) -> None:
    """In passthrough the api-server authenticates the same header: guard must see the same token."""
    assert bearer_token(header) == token
