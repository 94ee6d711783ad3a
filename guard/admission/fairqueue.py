"""Concurrency seats of one priority level, with API Priority and Fairness-style queues in front.

A request that finds a free seat (and nobody waiting) takes it at once, without suspending.
Otherwise it joins one of `queues` queues: its flow (tenant + user) is dealt a hand of
`hand_size` queues by shuffle sharding and joins the shortest, so a heavy flow fills only its
own hand. Seats freed are handed out by deficit round robin over the non-empty queues, weighted
by the seats each request needs, so every flow gets its turn in bounded rounds. Pure and
synchronous: the caller supplies a `grant` callback and does its own waiting and timing.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable

from guard.admission.config import PriorityLevel

_QUANTUM = 1.0  # seats credited to a queue per round
_HANDS_CACHED = 8192


class Waiter:
    """A queued request: `grant` is called once when it gets its seats."""

    __slots__ = ("done", "flow", "grant", "queue", "width")

    def __init__(self, flow: str, width: int, grant: Callable[[], None], queue: int) -> None:
        self.flow, self.width, self.grant, self.queue = flow, width, grant, queue
        self.done = False


def deal(flow: str, queues: int, hand_size: int) -> tuple[int, ...]:
    """`hand_size` distinct queue indices for `flow`, stable across processes (shuffle sharding)."""
    value = int.from_bytes(hashlib.blake2b(flow.encode(), digest_size=16).digest(), "big")
    remaining = list(range(queues))
    hand = []
    for _ in range(min(hand_size, queues)):
        value, pick = divmod(value, len(remaining))
        hand.append(remaining.pop(pick))
    return tuple(hand)


class FairQueue:
    """Seats and queues of one priority level."""

    def __init__(self, level: PriorityLevel) -> None:
        self.level = level
        self.seats_in_use = 0
        self.waiting = 0
        self.dispatched = 0  # requests that got seats after queuing
        self.rejected = 0  # requests refused because their queue was full
        self._queues: list[deque[Waiter]] = [deque() for _ in range(level.queues)]
        self._deficit = [0.0] * level.queues
        self._active: deque[int] = deque()  # non-empty queues in round-robin order
        self._hands: dict[str, tuple[int, ...]] = {}

    def width(self, cost: float) -> int:
        """Seats a request of `cost` occupies: at least 1, at most the level's seats."""
        return max(1, min(int(-(-cost // 1)), self.level.seats))

    def try_acquire(self, width: int) -> bool:
        """Take seats at once if free and nobody is waiting (waiters go first)."""
        if self.waiting or self.seats_in_use + width > self.level.seats:
            return False
        self.seats_in_use += width
        return True

    def enqueue(self, flow: str, width: int, grant: Callable[[], None]) -> Waiter | None:
        """Queue a request; None when the chosen queue is full (the caller rejects)."""
        index = min(self._hand(flow), key=lambda i: len(self._queues[i]))
        queue = self._queues[index]
        if len(queue) >= self.level.queue_length_limit:
            self.rejected += 1
            return None
        waiter = Waiter(flow, width, grant, index)
        if not queue:
            self._active.append(index)
        queue.append(waiter)
        self.waiting += 1
        self._dispatch()
        return waiter

    def cancel(self, waiter: Waiter) -> bool:
        """Take a waiter out (its wait timed out); False when it was granted meanwhile."""
        if waiter.done:
            return False
        queue = self._queues[waiter.queue]
        queue.remove(waiter)
        self.waiting -= 1
        waiter.done = True
        if not queue:
            self._retire(waiter.queue)
        return True

    def release(self, width: int) -> None:
        """Give seats back and hand them to waiters."""
        self.seats_in_use -= width
        if self.waiting:
            self._dispatch()

    def _hand(self, flow: str) -> tuple[int, ...]:
        hand = self._hands.get(flow)
        if hand is None:
            if len(self._hands) >= _HANDS_CACHED:
                self._hands.clear()
            hand = self._hands[flow] = deal(flow, self.level.queues, self.level.hand_size)
        return hand

    def _retire(self, index: int) -> None:
        self._active.remove(index)
        self._deficit[index] = 0.0

    def _dispatch(self) -> None:
        """Deficit round robin: a queue is served while its credit covers its head's seats."""
        while self._active and self.seats_in_use < self.level.seats:
            index = self._active[0]
            queue = self._queues[index]
            head = queue[0]
            if self._deficit[index] < head.width:
                self._deficit[index] += _QUANTUM
                self._active.rotate(-1)
                continue
            if self.seats_in_use + head.width > self.level.seats:
                return
            queue.popleft()
            self._deficit[index] -= head.width
            self.seats_in_use += head.width
            self.waiting -= 1
            self.dispatched += 1
            if not queue:
                self._active.popleft()
                self._deficit[index] = 0.0
            head.done = True
            head.grant()

    def snapshot(self) -> dict[str, object]:
        busy = [
            {
                "queue": i,
                "length": len(self._queues[i]),
                "deficit": self._deficit[i],
                "flows": sorted({w.flow for w in self._queues[i]}),
            }
            for i in self._active
        ]
        return {
            "level": self.level.name,
            "seats": self.level.seats,
            "seatsInUse": self.seats_in_use,
            "waiting": self.waiting,
            "dispatched": self.dispatched,
            "rejected": self.rejected,
            "queues": busy,
        }
