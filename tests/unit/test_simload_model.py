"""The simulator's overload model classifies and prices requests like the api-server's filters."""

import json

import pytest

from chaos.sim.options import SimOptions
from chaos.sim.overload import (
    MUTATING,
    READONLY,
    ReplicaLoad,
    is_exempt,
    long_running_verb,
    too_many_requests,
)


@pytest.mark.parametrize(
    ("method", "path", "query", "verb"),
    [
        ("GET", "/api/v1/pods", {"watch": "true"}, "WATCH"),
        ("GET", "/api/v1/pods", {"watch": "1"}, "WATCH"),
        ("GET", "/api/v1/watch/namespaces/a/pods", {}, "WATCH"),
        ("GET", "/api/v1/namespaces/a/pods/p/log", {"follow": "true"}, "WATCH"),
        ("GET", "/api/v1/namespaces/a/pods/p/exec", {"command": "ls"}, "CONNECT"),
        ("POST", "/api/v1/namespaces/a/pods/p/attach", {}, "CONNECT"),
        ("GET", "/api/v1/namespaces/a/pods/p/portforward", {}, "CONNECT"),
        ("GET", "/api/v1/namespaces/a/pods/p/log", {}, None),
        ("GET", "/api/v1/pods", {"watch": "false"}, None),
        ("GET", "/api/v1/namespaces/a/pods/p", {}, None),
        ("POST", "/api/v1/namespaces/a/pods", {}, None),
    ],
)
def test_long_running_requests_are_recognised(
    method: str, path: str, query: dict[str, str], verb: str
) -> None:
    """Watches, follows and connect verbs hold no seat; everything else does."""
    assert long_running_verb(method, path, query) == verb


@pytest.mark.parametrize(
    ("path", "exempt"),
    [
        ("/metrics", True),
        ("/healthz", True),
        ("/readyz", True),
        ("/livez", True),
        ("/debug/sim/state", True),
        ("/api/v1/pods", False),
        ("/metricsx", False),
    ],
)
def test_own_endpoints_are_exempt(path: str, exempt: bool) -> None:
    """The simulator's own and health endpoints never answer 429."""
    assert is_exempt(path) is exempt


def test_service_time_grows_with_seats_in_use() -> None:
    """At half the limit with exponent 2 the service time is 2.25 times the idle one."""
    load = ReplicaLoad(0, SimOptions(max_readonly_inflight=4, base_service_ms=10.0, load_exponent=2.0))
    idle = load.service_seconds(READONLY)
    assert load.try_acquire(READONLY) and load.try_acquire(READONLY)
    assert load.service_seconds(READONLY) == pytest.approx(idle * 2.25)
    assert idle == pytest.approx(0.010)


def test_list_time_grows_with_objects() -> None:
    """A LIST of 1000 objects at 20 us each costs 20 ms on top of the base."""
    load = ReplicaLoad(0, SimOptions(base_service_ms=2.0, per_object_service_us=20.0))
    assert load.service_seconds(READONLY, 1000) == pytest.approx(0.022)


def test_seats_are_bounded_per_kind() -> None:
    """Past the limit a seat is refused; mutating seats are counted apart from read-only ones."""
    load = ReplicaLoad(0, SimOptions(max_readonly_inflight=1, max_mutating_inflight=1))
    assert load.try_acquire(READONLY)
    assert not load.try_acquire(READONLY)
    assert load.try_acquire(MUTATING)
    load.release(READONLY)
    assert load.try_acquire(READONLY)


def test_rejection_is_a_kubernetes_status_with_retry_after() -> None:
    """The 429 carries Retry-After: 1 and a TooManyRequests Status like the api-server's."""
    response = too_many_requests()
    assert response.status == 429
    assert response.headers["Retry-After"] == "1"
    assert response.text is not None
    body = json.loads(response.text)
    assert body["kind"] == "Status"
    assert body["reason"] == "TooManyRequests"
    assert body["details"]["retryAfterSeconds"] == 1
    assert body["message"] == "Too many requests, please try again later."


async def test_a_list_past_the_memory_budget_crashes_without_a_replica_set() -> None:
    """Without a ReplicaSet the load still records the crash and the LIST raises."""
    from chaos.sim.overload import ReplicaCrashed

    load = ReplicaLoad(0, SimOptions(memory_budget_mb=1.0))
    await load.serve_list(10, 1000)
    assert load.up and load.list_bytes == 0
    with pytest.raises(ReplicaCrashed):
        await load.serve_list(10, 2 * 1024 * 1024)
    assert not load.up
    assert load.crashes == 1
    assert load.list_bytes == 0
