"""The gate in front of one cluster that enforces its adaptive concurrency limit
(`guard.admission.adaptive`) on ordinary requests, after policy admission and before forwarding.

Below the limit a request takes a slot at once. At the limit it is held in a queue of its own flow
(its tenant; its user when no policy names one), and freed slots go round robin over the flows
with requests held, so a tenant flooding the cluster waits behind itself while a light tenant's
request is next in line. A request whose flow already holds `queueLength` requests (or when
QUEUED_FLOWS flows' worth are held), or that waited `maxWait`, is answered 429 (`AtCapacity`) with
Retry-After. Exempt requests and long-running ones never come here: the caller decides. Every
slot's exchange reports how it went (`report`), which moves the limit.

It keeps plain counters for metrics (decisions per tenant) and never puts a user name in them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any, Literal

from guard.admission.adaptive import AdaptiveLimit, AdaptiveSettings, Outcome, outcome_of
from guard.errors import GuardError, TooManyRequests
from guard.requestinfo import RequestInfo

QUEUED_FLOWS = 64
"""At most queueLength x this many requests are held at once, whatever the number of flows."""
MAX_RETRY_AFTER = 10
MESSAGE = "Too many requests: the cluster is at capacity, please try again later."
Decision = Literal["admitted", "held", "overload"]
"""admitted: a slot at once; held: a slot after waiting; overload: answered 429."""


class AtCapacity(TooManyRequests):
    """The cluster's adaptive limit is reached and the request could not wait for a slot."""

    def __init__(self, retry_after: int, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(MESSAGE, retry_after=retry_after)
        self.headers = headers


def kind_of(info: RequestInfo) -> str:
    """What a request's no-load latency is learnt by: verb, resource and whether it spans every
    namespace (never a name: the same GET of any pod is one kind)."""
    if not info.is_resource_request:
        return f"{info.verb} {info.path}"
    scope = "namespaced" if info.namespace else "cluster"
    return f"{info.verb} {info.api_group}/{info.resource}/{info.subresource} {scope}"


def failure_of(error: GuardError) -> Outcome | None:
    """What a forwarding error says of the cluster: a timeout, a failed or broken connection (502,
    503), or nothing (the request's own fault: too large, a bad header)."""
    if isinstance(error.__cause__, TimeoutError):
        return "timeout"
    return "failed" if error.code in (502, 503) else None


class _Waiter:
    __slots__ = ("done", "flow", "granted")

    def __init__(self, flow: str, granted: asyncio.Future[None]) -> None:
        self.flow, self.granted, self.done = flow, granted, False


class CapacityGate:
    """One cluster's limit, slots and held requests in one guard process; kept across reloads."""

    def __init__(self, cluster: str, settings: AdaptiveSettings, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster = cluster
        self.settings = settings
        self.limiter = AdaptiveLimit(settings, clock=clock)
        self.in_flight = 0
        self.waiting = 0
        self._held: dict[str, deque[_Waiter]] = {}
        self._turns: deque[str] = deque()
        """Flows with requests held, in the order their next one gets a slot."""
        self.decisions: Counter[tuple[str, Decision]] = Counter()
        """(tenant, decision) -> requests."""

    def configure(self, settings: AdaptiveSettings) -> None:
        """New settings on reload: what was learnt stays."""
        self.settings = settings
        self.limiter.configure(settings)
        self._dispatch()

    @property
    def limit(self) -> int:
        return self.limiter.limit

    async def enter(self, flow: str, tenant: str, headers: Sequence[tuple[str, str]] = ()) -> Decision:
        """Take a slot, waiting in `flow`'s turn when none is free; raises AtCapacity. `tenant`
        labels the counters."""
        self.limiter.demand(self.in_flight + self.waiting + 1)
        if not self.waiting and self.in_flight < self.limiter.limit:
            self.in_flight += 1
            self.decisions[(tenant, "admitted")] += 1
            return "admitted"
        waiter = self._hold(flow)
        if waiter is None:
            raise self._refuse(tenant, headers)
        try:
            async with asyncio.timeout(self.settings.max_wait):
                await waiter.granted
        except TimeoutError:
            if self._cancel(waiter):
                raise self._refuse(tenant, headers) from None
        except asyncio.CancelledError:
            if not self._cancel(waiter):
                self.leave()  # granted as the client went away: give the slot back
            raise
        self.decisions[(tenant, "held")] += 1
        return "held"

    def leave(self) -> None:
        """Give a slot back (once per successful `enter`), when the answer has been relayed."""
        self.in_flight -= 1
        self._dispatch()

    def _hold(self, flow: str) -> _Waiter | None:
        """Queue a request in its flow; None when the flow's queue (or all of them) is full."""
        length = self.settings.queue_length
        queue = self._held.get(flow)
        if self.waiting >= length * QUEUED_FLOWS or (len(queue) if queue else 0) >= length:
            return None
        if queue is None:
            queue = self._held[flow] = deque()
            self._turns.append(flow)
        waiter = _Waiter(flow, asyncio.get_running_loop().create_future())
        queue.append(waiter)
        self.waiting += 1
        self._dispatch()  # the limit may have grown since the last slot was freed
        return waiter

    def _dispatch(self) -> None:
        """Hand free slots to held requests, one flow after another."""
        turns = self._turns
        while turns and self.in_flight < self.limiter.limit:
            flow = turns[0]
            queue = self._held[flow]
            waiter = queue.popleft()
            if queue:
                turns.rotate(-1)
            else:
                turns.popleft()
                del self._held[flow]
            self.waiting -= 1
            self.in_flight += 1
            waiter.done = True
            if not waiter.granted.done():
                waiter.granted.set_result(None)

    def _cancel(self, waiter: _Waiter) -> bool:
        """Take a held request out (its wait ended); False when it was granted meanwhile."""
        if waiter.done:
            return False
        waiter.done = True
        queue = self._held[waiter.flow]
        queue.remove(waiter)
        if not queue:
            del self._held[waiter.flow]
            self._turns.remove(waiter.flow)
        self.waiting -= 1
        return True

    def report(self, seconds: float, info: RequestInfo, *, status: int = 0,
               error: GuardError | None = None) -> None:
        """How one exchange that held a slot went, `seconds` after it was sent: the api-server's
        answer `status`, or the `error` guard answers instead."""
        outcome = outcome_of(status) if error is None else failure_of(error)
        if outcome is not None:
            self.observe(seconds, outcome, info)

    def observe(self, seconds: float, outcome: Outcome, info: RequestInfo) -> None:
        self.limiter.observe(seconds, outcome, kind_of(info))
        self._dispatch()

    def _refuse(self, tenant: str, headers: Sequence[tuple[str, str]]) -> AtCapacity:
        self.decisions[(tenant, "overload")] += 1
        backlog = self.waiting // max(1, self.limiter.limit)
        return AtCapacity(min(MAX_RETRY_AFTER, 1 + backlog), headers)

    def snapshot(self) -> dict[str, Any]:
        """/debug/guard/adaptive: the limiter's state, slots, held requests and decisions."""
        decided: Counter[str] = Counter()
        for (_, decision), n in self.decisions.items():
            decided[decision] += n
        return {"cluster": self.cluster, "enabled": True, **self.limiter.snapshot(),
                "inFlight": self.in_flight, "waiting": self.waiting, "flowsWaiting": len(self._turns),
                "queueLength": self.settings.queue_length, "maxWait": self.settings.max_wait,
                "decisions": dict(decided)}
