"""SubjectAccessReview amplification (issue 13, item 4): an `Impersonate-*` request's reviews are
bounded before any is made — by the number of groups and extras, by reviews per request, and by a
budget per caller — and reviewing stops at the first denial."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from guard.identity.budget import Rate
from guard.identity.impersonation import ImpersonationCheck
from guard.identity.settings import IdentitySettings, ImpersonationSettings
from guard.kube.errors import BadRequest, Forbidden, TooManyRequests
from tests.doubles import FakeClock
from tests.unit.test_identity_impersonation import ADMIN, MALLORY, FakeSar


def ask(user: str, groups: int = 0, extras: int = 0) -> CIMultiDict[str]:
    pairs = [("Impersonate-User", user)]
    pairs += [("Impersonate-Group", f"g{i}") for i in range(groups)]
    pairs += [(f"Impersonate-Extra-k{i % 6}", f"v{i}") for i in range(extras)]
    return CIMultiDict(pairs)


def check(sar: FakeSar, clock: FakeClock, **bounds: object) -> ImpersonationCheck:
    settings = IdentitySettings(impersonation=ImpersonationSettings(**bounds))  # type: ignore[arg-type]
    return ImpersonationCheck(sar, settings=settings, clock=clock)


async def test_64_groups_and_180_extras_are_refused_before_any_review() -> None:
    """The request that once cost 245 reviews is a 400 naming the bound, and costs none."""
    sar = FakeSar()
    impersonation = check(sar, FakeClock())
    with pytest.raises(BadRequest, match="Impersonate-Group"):
        await impersonation.resolve(ADMIN, ask("bob", groups=64, extras=180))
    with pytest.raises(BadRequest, match="Impersonate-Extra"):
        await impersonation.resolve(ADMIN, ask("bob", groups=3, extras=33))
    assert sar.specs == [] and impersonation.stats.impersonation_refusals == 2


async def test_reviewing_stops_at_the_first_denial() -> None:
    """mallory may not impersonate the user: one review, not one per group and extra."""
    sar = FakeSar()
    with pytest.raises(Forbidden):
        await check(sar, FakeClock()).resolve(MALLORY, ask("bob", groups=30, extras=30))
    assert len(sar.specs) == 1


async def test_a_request_needing_many_reviews_makes_a_bounded_number_each_time() -> None:
    """admin asks for 1 user + 30 groups + 30 extras (61 reviews) with at most 16 per request:
    429, 429, 429, then success — each target reviewed once in all."""
    sar = FakeSar()
    impersonation = check(sar, FakeClock(), max_reviews_per_request=16, per_caller=Rate(100.0, 100.0))
    outcomes = []
    for _ in range(4):
        try:
            who = await impersonation.resolve(ADMIN, ask("bob", groups=30, extras=30))
            outcomes.append(who.user)
        except TooManyRequests as e:
            outcomes.append(e.code)
            assert e.retry_after == 1
    assert outcomes == [429, 429, 429, "bob"]
    assert len(sar.specs) == 61


async def test_a_caller_has_a_budget_of_reviews() -> None:
    """100 requests by mallory, each naming a new user to impersonate: the per-caller burst (10) is
    reviewed, the other 90 get 429 without a review; the budget refills at its rate."""
    sar, clock = FakeSar(), FakeClock()
    impersonation = check(sar, clock, per_caller=Rate(2.0, 10.0))
    refused = 0
    for i in range(100):
        try:
            await impersonation.resolve(MALLORY, ask(f"user-{i}"))
        except Forbidden:
            pass
        except TooManyRequests:
            refused += 1
    assert (len(sar.specs), refused) == (10, 90)
    clock.advance(5)
    with pytest.raises(Forbidden):
        await impersonation.resolve(MALLORY, ask("user-new"))
    assert len(sar.specs) == 11


async def test_cached_denials_cost_nothing() -> None:
    """mallory repeating one denied ask 1,000 times: one review, no budget spent."""
    sar = FakeSar()
    impersonation = check(sar, FakeClock(), per_caller=Rate(1.0, 1.0))
    for _ in range(1000):
        with pytest.raises(Forbidden):
            await impersonation.resolve(MALLORY, ask("bob", groups=5))
    assert len(sar.specs) == 1
