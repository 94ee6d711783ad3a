"""An endpoint's circuit breaker and slow start, and the choice of endpoint among a cluster's, on a fake
clock: counts of what each endpoint gets, never timings."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest

from guard.routing.balance import choose
from guard.routing.breaker import MIN_WEIGHT, EndpointHealth
from guard.routing.config import HealthSettings

SETTINGS = HealthSettings(failures=3, cool_down=5.0, slow_start=10.0)


@dataclass(eq=False)
class Ep:
    name: str
    in_flight: int = 0
    health: EndpointHealth = field(default_factory=lambda: EndpointHealth(SETTINGS))


def picks(endpoints: list[Ep], n: int, now: float = 0.0) -> Counter[str]:
    """Who takes each of n requests made one after another (each finishes before the next)."""
    got: Counter[str] = Counter()
    for turn in range(n):
        ep = choose(endpoints, now, turn % len(endpoints))
        assert ep is not None
        got[ep.name] += 1
    return got


def opened(ep: Ep, now: float = 0.0) -> Ep:
    for _ in range(SETTINGS.failures):
        ep.health.failed(now, "ConnectFailed")
    return ep


def test_consecutive_failures_open_the_circuit_and_an_answer_resets_the_count() -> None:
    """Two failures, an answer, two failures: still closed; the third in a row opens it, once."""
    h = EndpointHealth(SETTINGS)
    h.failed(0, "ConnectFailed")
    h.failed(0, "ConnectFailed")
    h.succeeded(0)
    h.failed(0, "ConnectFailed")
    h.failed(0, "ConnectFailed")
    assert h.state == "closed" and h.consecutive == 2
    h.failed(1, "TimeoutError")
    assert (h.state, h.opens, h.failures, h.last_failure) == ("open", 1, 5, "TimeoutError")


def test_an_open_circuit_lets_one_probe_through_after_the_cool_down() -> None:
    """No probe before the cool-down; one after it; a lost probe frees the next one a cool-down later;
    a failed probe opens it again; an answer closes it and starts slow start."""
    h = opened(Ep("a")).health
    assert not h.probe_due(4.9) and h.probe_due(5.0)
    h.start_probe(5.0)
    assert h.state == "half-open" and not h.probe_due(9.9) and h.probe_due(10.0)
    h.failed(10.0, "ConnectFailed")
    assert h.state == "open" and h.opens == 1 and not h.probe_due(14.9)
    h.start_probe(15.0)
    h.succeeded(15.2)
    assert (h.state, h.consecutive, h.warm_since) == ("closed", 0, 15.2)


@pytest.mark.parametrize(("after", "weight"), [(0.0, MIN_WEIGHT), (0.5, MIN_WEIGHT), (5.0, 0.5), (8.0, 0.8),
                                               (10.0, 1.0), (60.0, 1.0)])
def test_slow_start_ramps_the_weight_from_a_tenth_to_one(after: float, weight: float) -> None:
    """Linear over slowStart seconds, floored at a tenth; afterwards the endpoint is simply up."""
    h = opened(Ep("a")).health
    h.succeeded(100.0)
    assert h.weight(100.0 + after) == pytest.approx(weight)
    assert (h.warm_since is None) == (after >= 10.0)


def test_without_slow_start_a_recovered_endpoint_takes_its_full_share_at_once() -> None:
    """slowStart 0: no warming."""
    h = EndpointHealth(HealthSettings(slow_start=0))
    h.failed(0, "x"), h.failed(0, "x"), h.failed(0, "x")
    h.succeeded(6)
    assert h.warm_since is None and h.weight(6) == 1.0


def test_least_in_flight_among_closed_endpoints_and_even_rotation_on_ties() -> None:
    """The least busy wins; idle equals split the load evenly."""
    a, b, c = Ep("a", in_flight=3), Ep("b", in_flight=1), Ep("c", in_flight=2)
    assert choose([a, b, c], 0.0, 0) is b
    assert picks([Ep("a"), Ep("b"), Ep("c")], 300) == {"a": 100, "b": 100, "c": 100}


def test_an_open_endpoint_gets_nothing_until_its_probe_is_due() -> None:
    """100 requests during the cool-down all go to the healthy endpoint; then one probe goes to the
    dead one, and while it is out nothing else does."""
    a, dead = Ep("a"), opened(Ep("dead"))
    assert picks([a, dead], 100, now=1.0) == {"a": 100}
    assert choose([a, dead], 5.0, 0) is dead and dead.health.state == "half-open"
    assert picks([a, dead], 50, now=6.0) == {"a": 50}


def test_when_every_circuit_is_open_guard_tries_them_anyway() -> None:
    """Better a chance than a 503: the least busy of the dead ones, skipping what this request tried."""
    a, b = opened(Ep("a")), opened(Ep("b"))
    a.in_flight = 1
    assert choose([a, b], 1.0, 0) is b
    assert choose([a, b], 1.0, 0, {id(b)}) is a
    assert choose([a, b], 1.0, 0, {id(a), id(b)}) is None


def test_a_warming_endpoint_takes_a_ramping_share_of_new_requests() -> None:
    """Its fair share (half, of two) times its weight: just back (0.1) about one request in twenty,
    half way (0.5) one in four, after slowStart half; used at once when the other one is skipped."""
    a, back = Ep("a"), opened(Ep("back"))
    back.health.succeeded(100.0)
    early = picks([a, back], 400, now=100.0)
    assert 18 <= early["back"] <= 22
    half = picks([a, back], 400, now=105.0)
    assert 95 <= half["back"] <= 105
    assert picks([a, back], 200, now=110.0) == {"a": 100, "back": 100}
    fresh, again = Ep("a"), opened(Ep("again"))
    again.health.succeeded(0.0)
    assert choose([fresh, again], 0.0, 0, {id(fresh)}) is again
