"""The fleet's views of an endpoint folded into one replica's breaker (guard.routing.shared), on a fake
clock: which state the local circuit takes, when slow start begins, and what the balance then sends
where — counts and states, never timings."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest

from guard.routing.balance import choose
from guard.routing.breaker import EndpointHealth
from guard.routing.config import HealthSettings
from guard.routing.shared import View, fold, forget, quorum

SETTINGS = HealthSettings(failures=3, cool_down=5.0, slow_start=10.0)


@dataclass(eq=False)
class Ep:
    name: str
    in_flight: int = 0
    health: EndpointHealth = field(default_factory=lambda: EndpointHealth(SETTINGS))


def healthy(answered: float = 0.0) -> EndpointHealth:
    health = EndpointHealth(SETTINGS)
    health.succeeded(answered)
    return health


def dead(at: float) -> View:
    """Another replica whose circuit opened at `at`, after its last answer."""
    return View("open", 3, 0, opened=at, answered=at - 1)


def alive(answered: float, *, recovered: float | None = None, opened: float | None = None) -> View:
    return View("closed", 0, 0, opened=opened, closed=recovered, answered=answered)


def picks(endpoints: list[Ep], n: int, now: float) -> Counter[str]:
    got: Counter[str] = Counter()
    for turn in range(n):
        ep = choose(endpoints, now, turn % len(endpoints))
        assert ep is not None
        got[ep.name] += 1
    return got


@pytest.mark.parametrize(("open_views", "replicas", "shared"), [
    (0, 1, False), (1, 1, True), (1, 2, True), (1, 3, False), (2, 3, True), (2, 4, True), (1, 4, False),
    (3, 5, True), (2, 5, False),
])
def test_a_quorum_is_at_least_half_of_the_live_replicas(open_views: int, replicas: int, shared: bool) -> None:
    """With two replicas one open view is enough; with three or more a single replica's view is not."""
    assert quorum(open_views, replicas) is shared


def test_one_of_two_replicas_seeing_it_dead_opens_the_circuit_here_until_a_cool_down() -> None:
    """The other replica's circuit opened at 10, after every answer anyone heard: the closed circuit here
    opens on the fleet's word (no failure of its own), and its probe is due one cool-down later."""
    health = healthy(answered=8.0)
    fold(health, [dead(10.0)], now=11.0)
    assert (health.state, health.source, health.fleet_opens, health.failures) == ("open", "fleet", 1, 0)
    assert health.opened_at == 10.0 and not health.probe_due(15.9) and health.probe_due(16.0)
    assert health.fleet is not None and (health.fleet.replicas, health.fleet.open) == (2, 2)


def test_the_balance_sends_nothing_to_an_endpoint_the_fleet_opened_until_its_probe() -> None:
    """20 requests after the fleet opened b: all to a; after the cool-down the first one probes b."""
    a, b = Ep("a"), Ep("b")
    a.health.succeeded(8.0)
    b.health.succeeded(8.0)
    fold(b.health, [dead(10.0)], now=11.0)
    assert picks([a, b], 20, now=12.0) == Counter(a=20)
    assert choose([a, b], 16.0, 0) is b and b.health.state == "half-open"


def test_a_single_replica_of_three_cannot_open_it_for_the_others() -> None:
    """One of three sees it dead: not a quorum; a second one does: it opens here too."""
    health = healthy(answered=8.0)
    fold(health, [dead(10.0), alive(answered=7.0)], now=11.0)
    assert health.state == "closed" and health.fleet is not None and health.fleet.open == 1
    fold(health, [dead(10.0), dead(10.5)], now=11.5)
    assert (health.state, health.opened_at) == ("open", 10.5)


def test_an_answer_heard_after_the_opening_keeps_the_circuit_closed() -> None:
    """One replica's circuit opened at 10 (its own link is down), but another heard the endpoint answer
    at 10.5: the endpoint is alive, and the circuit here stays closed."""
    health = healthy(answered=8.0)
    fold(health, [dead(10.0), alive(answered=10.5)], now=11.0)
    assert health.state == "closed" and health.fleet_opens == 0


def test_a_recovery_seen_by_another_replica_closes_it_here_with_the_same_slow_start() -> None:
    """This replica's circuit opened on its own failures at 10; the other replica's probe got an answer
    at 20: the circuit here closes without a probe of its own, and its slow start counts from 20."""
    health = healthy(answered=8.0)
    for _ in range(3):
        health.failed(10.0, "ConnectFailed")
    fold(health, [alive(answered=20.5, recovered=20.0, opened=12.0)], now=21.0)
    assert (health.state, health.source, health.fleet_closes) == ("closed", "fleet", 1)
    assert health.warm_since == 20.0 and health.closed_at == 20.0
    assert health.weight(25.0) == pytest.approx(0.5)


def test_answers_of_a_replica_that_never_lost_it_close_only_a_circuit_the_fleet_opened() -> None:
    """This replica's own failures opened its circuit at 10 (its own path may be broken); the other
    replica, which never lost the endpoint, hears it answer at 20: the circuit here stays open until its
    own probe. A circuit the fleet opened here closes on that answer, its slow start from now."""
    own = healthy(answered=8.0)
    for _ in range(3):
        own.failed(10.0, "ConnectFailed")
    fold(own, [alive(answered=20.0)], now=21.0)
    assert (own.state, own.source, own.fleet_closes) == ("open", "local", 0)
    told = healthy(answered=8.0)
    fold(told, [dead(10.0)], now=11.0)
    fold(told, [alive(answered=20.0)], now=21.0)
    assert (told.state, told.source, told.fleet_closes, told.warm_since) == ("closed", "fleet", 1, 21.0)


def test_a_replica_warming_from_its_own_later_recovery_ramps_with_the_first_one() -> None:
    """Both replicas' probes succeeded, the other's at 20 and this one's at 22: this one's ramp moves
    back to 20, so both give the endpoint the same share."""
    health = healthy(answered=8.0)
    for _ in range(3):
        health.failed(10.0, "ConnectFailed")
    health.start_probe(21.9)
    health.succeeded(22.0)
    assert health.warm_since == 22.0
    fold(health, [alive(answered=23.0, recovered=20.0, opened=10.0)], now=23.0)
    assert health.warm_since == 20.0 and health.source == "local"


def test_a_recovery_before_the_latest_opening_does_not_close_it() -> None:
    """The other replica recovered at 20, but this one's probe failed at 25: the newest event is an
    opening, so the circuit here stays open, and the other replica's view does not open it again
    (it is closed and the quorum of two needs one open view — this one)."""
    health = healthy(answered=8.0)
    for _ in range(3):
        health.failed(10.0, "ConnectFailed")
    health.start_probe(24.9)
    health.failed(25.0, "ConnectFailed")
    fold(health, [alive(answered=20.5, recovered=20.0, opened=10.0)], now=26.0)
    assert (health.state, health.opened_at, health.fleet_closes) == ("open", 25.0, 0)


def test_a_failure_while_already_open_is_no_new_opening() -> None:
    """A request sent before the circuit opened fails later: the opening stays at its first time, so a
    recovery the fleet saw in between still wins."""
    health = healthy(answered=8.0)
    for _ in range(3):
        health.failed(10.0, "ConnectFailed")
    health.failed(21.0, "ConnectionBroken")
    assert health.opened_at == 10.0
    fold(health, [alive(answered=20.5, recovered=20.0, opened=10.0)], now=22.0)
    assert health.state == "closed"


def test_without_other_replicas_the_local_view_is_the_whole_truth() -> None:
    health = healthy(answered=8.0)
    for _ in range(3):
        health.failed(10.0, "ConnectFailed")
    fold(health, [], now=11.0)
    assert health.state == "open" and health.fleet is not None and health.fleet.replicas == 1


def test_least_in_flight_counts_the_other_replicas_requests_and_forget_drops_them() -> None:
    """The other replicas hold 5 requests on a: this replica sends its next ones to b until its own
    load there makes up the difference; once Redis is gone, a and b share evenly again."""
    a, b = Ep("a"), Ep("b")
    fold(a.health, [View("closed", 0, 5, answered=1.0, replica="r2")], now=2.0)
    fold(b.health, [View("closed", 0, 0, answered=1.0, replica="r2")], now=2.0)
    assert a.health.elsewhere == 5
    assert a.health.fleet is not None and a.health.fleet.states == (("r2", "closed"),)
    chosen = []
    for _ in range(6):  # requests that stay in flight
        ep = choose([a, b], 2.0, 0)
        assert ep is not None
        ep.in_flight += 1
        chosen.append(ep.name)
    assert chosen == ["b"] * 5 + ["a"]
    forget(a.health)
    assert (a.health.elsewhere, a.health.fleet) == (0, None)
    a.in_flight = b.in_flight = 0
    assert picks([a, b], 10, now=3.0) == Counter(a=5, b=5)


def test_the_snapshot_shows_the_local_state_and_the_fleet_view() -> None:
    health = healthy(answered=8.0)
    assert health.snapshot(9.0)["fleet"] is None
    fold(health, [View("open", 3, 2, opened=10.0, answered=7.0, replica="r2")], now=11.0)
    shown = health.snapshot(11.0)
    assert (shown["state"], shown["source"]) == ("open", "fleet")
    assert shown["fleet"] == {"opens": 1, "closes": 0, "replicas": 2, "open": 2, "inFlightElsewhere": 2,
                              "views": {"r2": "open"}}
