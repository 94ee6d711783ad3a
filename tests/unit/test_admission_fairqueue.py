"""Fair queuing within a priority level: shuffle sharding plus deficit round robin by seats."""

from __future__ import annotations

from guard.admission.config import PriorityLevel
from guard.admission.fairqueue import FairQueue, deal


def test_hands_are_distinct_stable_queue_indices() -> None:
    """A flow is always dealt the same hand of distinct queues."""
    hand = deal("team-a/alice", 64, 8)
    assert hand == deal("team-a/alice", 64, 8)
    assert len(set(hand)) == 8 and all(0 <= q < 64 for q in hand)
    assert hand != deal("team-a/bob", 64, 8)


def test_light_flows_are_served_in_bounded_rounds_behind_a_heavy_flow() -> None:
    """With 40 heavy requests queued first (spread over its hand of 8 queues), each of 5 light flows
    is served within the first round: 8 heavy queues + 5 light ones = 13 grants, not after 40 (FIFO)."""
    fq = FairQueue(PriorityLevel("p", seats=1, queues=64, hand_size=8, queue_length_limit=100))
    assert fq.try_acquire(1)
    served: list[str] = []
    for i in range(40):
        assert fq.enqueue("heavy", 1, lambda i=i: served.append(f"heavy-{i}")) is not None
    for name in ("l1", "l2", "l3", "l4", "l5"):
        assert fq.enqueue(name, 1, lambda name=name: served.append(name)) is not None
    assert fq.waiting == 45 and not fq.try_acquire(1)
    while fq.waiting:
        fq.release(1)
    fq.release(1)
    assert len(served) == 45
    light_positions = [served.index(n) for n in ("l1", "l2", "l3", "l4", "l5")]
    assert max(light_positions) < 13
    assert fq.seats_in_use == 0


def test_a_full_queue_refuses_and_a_cancelled_waiter_is_never_granted() -> None:
    """queueLengthLimit bounds each queue; cancel takes a waiter out."""
    fq = FairQueue(PriorityLevel("p", seats=1, queues=1, hand_size=1, queue_length_limit=2))
    assert fq.try_acquire(1)
    granted: list[int] = []
    first = fq.enqueue("f", 1, lambda: granted.append(1))
    assert fq.enqueue("f", 1, lambda: granted.append(2)) is not None
    assert fq.enqueue("f", 1, lambda: granted.append(3)) is None
    assert fq.rejected == 1
    assert first is not None and fq.cancel(first)
    fq.release(1)
    assert granted == [2]
    assert not fq.cancel(first)


def test_seats_are_shared_by_cost_not_by_request_count() -> None:
    """A flow of 3-seat requests gets about as many seats as a flow of 1-seat requests."""
    fq = FairQueue(PriorityLevel("p", seats=3, queues=64, hand_size=1, queue_length_limit=100))
    assert fq.try_acquire(3)
    seats = {"wide": 0, "thin": 0}
    running: list[int] = []

    def grant(flow: str, width: int) -> None:
        seats[flow] += width
        running.append(width)

    for _ in range(30):
        fq.enqueue("wide", 3, lambda: grant("wide", 3))
        fq.enqueue("thin", 1, lambda: grant("thin", 1))
    fq.release(3)
    while running and sum(seats.values()) < 60:
        fq.release(running.pop(0))
    assert abs(seats["wide"] - seats["thin"]) <= 6
    assert fq.width(0.5) == 1 and fq.width(2.2) == 3 and fq.width(100) == 3
