"""The gate that enforces a cluster's adaptive limit (guard.admission.capacity): slots, held
requests served fairly between flows by cost, 429s when a flow's queue is full or its wait ends,
and what exchanges report back."""

from __future__ import annotations

import asyncio

import pytest

from guard.admission.adaptive import AdaptiveSettings
from guard.admission.capacity import AtCapacity, CapacityGate, failure_of, kind_of
from guard.http.answers import status as status_answer
from guard.kube.errors import BadRequest, ServiceUnavailable, UpstreamError
from guard.kube.requestinfo import classify

GET = classify("GET", "/api/v1/namespaces/a/pods/x", {})
LIST = classify("GET", "/api/v1/pods", {})


def gate(*, limit: int = 2, queue: int = 10, wait: float = 30.0) -> CapacityGate:
    """A gate whose limit is `limit` (its probe runs at min = limit)."""
    return CapacityGate("dev", AdaptiveSettings(enabled=True, min=limit, max=limit, initial=limit,
                                                queue_length=queue, max_wait=wait))


async def test_requests_take_slots_up_to_the_limit_then_wait_for_one() -> None:
    """Two of two slots at once; the third is held until one is given back, then admitted."""
    g = gate(limit=2)
    assert await g.enter("a", "a", GET) == "admitted"
    assert await g.enter("a", "a", GET) == "admitted"
    third = asyncio.ensure_future(g.enter("a", "a", GET))
    await asyncio.sleep(0)
    assert not third.done() and g.waiting == 1 and g.in_flight == 2
    g.leave()
    assert await third == "held"
    assert g.in_flight == 2 and g.waiting == 0
    assert dict(g.decisions) == {("a", "admitted"): 2, ("a", "held"): 1}


async def test_freed_slots_go_round_robin_between_flows() -> None:
    """A flood's 5 held requests and a light tenant's one: the light one gets the second freed slot,
    not the sixth."""
    g = gate(limit=1)
    await g.enter("flood", "flood", GET)
    order: list[str] = []

    async def one(flow: str) -> None:
        await g.enter(flow, flow, GET)
        order.append(flow)

    tasks = [asyncio.ensure_future(one("flood")) for _ in range(5)]
    await asyncio.sleep(0)
    tasks.append(asyncio.ensure_future(one("light")))
    await asyncio.sleep(0)
    for _ in range(6):
        g.leave()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == ["flood", "light", "flood", "flood", "flood", "flood"]


async def test_slot_time_is_shared_by_cost_so_cheap_requests_are_not_starved_by_dear_ones() -> None:
    """LISTs learnt at 100 ms, GETs at 10 ms: while a LIST tenant holds 3 and a GET tenant 6, the
    GET tenant's six go before the LIST tenant's second (start-time fair queuing by cost)."""
    g = gate(limit=1)
    for _ in range(10):  # the probe: no-load latency of each kind
        g.observe(0.100, "ok", LIST)
        g.observe(0.010, "ok", GET)
    await g.enter("x", "x", GET)
    order: list[str] = []

    async def one(flow: str) -> None:
        await g.enter(flow, flow, LIST if flow == "lists" else GET)
        order.append(flow)

    tasks = [asyncio.ensure_future(one("lists")) for _ in range(3)]
    tasks += [asyncio.ensure_future(one("gets")) for _ in range(6)]
    await asyncio.sleep(0)
    for _ in range(9):
        g.leave()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == ["lists", *["gets"] * 6, "lists", "lists"]


async def test_a_full_flow_queue_is_answered_429_at_once_and_others_still_wait() -> None:
    """queueLength 2: the flood's third held request is refused with a TooManyRequests Status
    carrying Retry-After and the verdict's headers; another flow may still wait."""
    g = gate(limit=1, queue=2)
    await g.enter("flood", "flood", GET)
    held = [asyncio.ensure_future(g.enter("flood", "flood", GET)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(AtCapacity) as refused:
        await g.enter("flood", "flood", GET, (("X-Guard-Tenant-Id", "t1"),))
    error = refused.value
    assert error.code == 429 and error.retry_after is not None and error.retry_after >= 1
    body = status_answer(error)
    assert b"Retry-After: " in body and b"X-Guard-Tenant-Id: t1" in body
    assert b'"reason": "TooManyRequests"' in body and b"at capacity" in body
    light = asyncio.ensure_future(g.enter("light", "light", GET))
    await asyncio.sleep(0)
    assert not light.done() and g.waiting == 3
    for _ in range(3):
        g.leave()
        await asyncio.sleep(0)
    assert await light == "held" and all(t.done() for t in held)
    assert g.decisions[("flood", "overload")] == 1


async def test_queue_length_zero_refuses_at_once() -> None:
    g = gate(limit=1, queue=0)
    await g.enter("a", "a", GET)
    with pytest.raises(AtCapacity):
        await g.enter("b", "b", GET)
    assert g.waiting == 0


async def test_a_request_held_past_max_wait_is_refused_and_leaves_no_trace() -> None:
    g = gate(limit=1, wait=0.01)
    await g.enter("a", "a", GET)
    with pytest.raises(AtCapacity):
        await g.enter("b", "b", GET)
    assert g.waiting == 0 and g.in_flight == 1
    g.leave()
    assert await g.enter("b", "b", GET) == "admitted"


async def test_a_client_that_leaves_while_held_gives_its_place_back() -> None:
    """Cancelled while held: out of the queue; the next freed slot goes to the next flow."""
    g = gate(limit=1)
    await g.enter("a", "a", GET)
    gone = asyncio.ensure_future(g.enter("b", "b", GET))
    stays = asyncio.ensure_future(g.enter("c", "c", GET))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    assert g.waiting == 1
    g.leave()
    assert await stays == "held" and g.in_flight == 1 and g.waiting == 0


async def test_a_growing_limit_hands_slots_to_held_requests_at_once() -> None:
    """When a report grows the limit, held requests are admitted without waiting for a leave."""
    g = CapacityGate("dev", AdaptiveSettings(enabled=True, min=1, max=10, initial=3))
    for _ in range(20):  # the probe, at min = 1
        g.observe(0.01, "ok", GET)
    assert g.limit == 3
    for _ in range(3):
        await g.enter("a", "a", GET)
    held = asyncio.ensure_future(g.enter("a", "a", GET))
    await asyncio.sleep(0)
    assert not held.done()
    g.limiter.configure(AdaptiveSettings(enabled=True, min=5, max=10, initial=5))
    g.observe(0.01, "ok", GET)
    assert await held == "held" and g.in_flight == 4


@pytest.mark.parametrize(("error", "outcome"), [
    (ServiceUnavailable("no api-server is reachable", retry_after=1), "failed"),
    (UpstreamError("api-server broke the connection"), "failed"),
    (BadRequest("a header contains a line break"), None),
])
def test_what_a_forwarding_error_says_of_the_cluster(error: Exception, outcome: str | None) -> None:
    assert failure_of(error) == outcome  # type: ignore[arg-type]


def test_a_timeout_is_a_timeout() -> None:
    try:
        try:
            raise TimeoutError
        except TimeoutError as e:
            raise ServiceUnavailable("did not answer in time", retry_after=1) from e
    except ServiceUnavailable as error:
        assert failure_of(error) == "timeout"


@pytest.mark.parametrize(("method", "path", "query", "kind"), [
    ("GET", "/api/v1/namespaces/a/pods/x", {}, "get /pods/ namespaced"),
    ("GET", "/api/v1/namespaces/b/pods/y", {}, "get /pods/ namespaced"),
    ("GET", "/api/v1/pods", {}, "list /pods/ cluster"),
    ("GET", "/apis/apps/v1/namespaces/a/deployments/d/scale", {}, "get apps/deployments/scale namespaced"),
    ("GET", "/version", {}, "get /version"),
    ("GET", "/openapi/v3/apis/apps/v1", {}, "get /openapi"),
    ("GET", "/made-up/secret-looking-path", {}, "get /made-up"),
])
def test_kinds_never_name_an_object(method: str, path: str, query: dict[str, str], kind: str) -> None:
    assert kind_of(classify(method, path, query)) == kind
