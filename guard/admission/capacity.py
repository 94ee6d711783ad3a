"""The gate in front of one cluster that enforces its adaptive concurrency limit
(`guard.admission.adaptive`) on ordinary requests, after policy admission and before forwarding.

Below the limit a request takes a slot at once. At the limit it is held in a queue of its own flow
(its tenant; its user when no policy names one), and freed slots go to the flows by start-time
fair queuing, each request priced by the no-load latency of its kind: every flow gets an equal
share of slot time, so a tenant flooding the cluster with LISTs waits behind itself while a
tenant of quick GETs gets as many of them through as the LISTs' time would have cost. A request
whose flow already holds `queueLength` requests (or when QUEUED_FLOWS flows' worth are held), or
that waited `maxWait`, is answered 429 (`AtCapacity`) with Retry-After. Exempt requests and
long-running ones never come here: the caller decides. Every slot's exchange reports how it went
(`report`), which moves the limit.

It keeps plain counters for metrics (decisions per tenant) and never puts a user name in them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any, Literal

from guard.admission.adaptive import AdaptiveLimit, AdaptiveSettings, Result, result_of
from guard.kube.errors import GuardError, TooManyRequests
from guard.kube.requestinfo import RequestInfo

QUEUED_FLOWS = 64
"""At most queueLength x this many requests are held at once, whatever the number of flows."""
MAX_RETRY_AFTER = 10
MESSAGE = "Too many requests: the cluster is at capacity, please try again later."
Decision = Literal["admitted", "held", "overload"]
"""admitted: a slot at once; held: a slot after waiting; overload: answered 429."""


class AtCapacity(TooManyRequests):
    """The cluster's adaptive limit is reached and the request could not wait for a slot."""

    def __init__(self, retry_after: int, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(MESSAGE, retry_after=retry_after, headers=headers)


def kind_of(info: RequestInfo) -> str:
    """What a request's no-load latency is learnt by: verb, resource and whether it spans every
    namespace (never a name: the same GET of any pod is one kind); for other paths, their first
    segment (a path a client makes up is never shown or kept)."""
    if not info.is_resource_request:  # by its first segment: /version, /openapi, /apis, /healthz
        return f"{info.verb} /{info.path.lstrip('/').partition('/')[0]}"
    scope = "namespaced" if info.namespace else "cluster"
    return f"{info.verb} {info.api_group}/{info.resource}/{info.subresource} {scope}"


def failure_of(error: GuardError) -> Result | None:
    """What a forwarding error says of the cluster: a timeout, a failed or broken connection (502,
    503), or nothing (the request's own fault: too large, a bad header)."""
    if isinstance(error.__cause__, TimeoutError):
        return "timeout"
    return "failed" if error.code in (502, 503) else None


class _Waiter:
    __slots__ = ("done", "flow", "granted", "start")

    def __init__(self, flow: str, granted: asyncio.Future[None], start: float) -> None:
        self.flow, self.granted, self.start, self.done = flow, granted, start, False


class _Flow:
    __slots__ = ("finish", "held")

    def __init__(self, finish: float) -> None:
        self.held: deque[_Waiter] = deque()
        self.finish = finish
        """Virtual time at which this flow's last held request will have had its share."""


class CapacityGate:
    """One cluster's limit, slots and held requests in one guard process; kept across reloads."""

    def __init__(self, cluster: str, settings: AdaptiveSettings, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster = cluster
        self.settings = settings
        self.limiter = AdaptiveLimit(settings, clock=clock)
        self.in_flight = 0
        self.waiting = 0
        self._flows: dict[str, _Flow] = {}
        """Flows with requests held."""
        self._now = 0.0
        """Virtual time: the start tag of the request that last got a slot."""
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

    async def enter(self, flow: str, tenant: str, info: RequestInfo,
                    headers: Sequence[tuple[str, str]] = ()) -> Decision:
        """Take a slot, waiting for `flow`'s turn when none is free; raises AtCapacity. `tenant`
        labels the counters; `info` prices the request by its kind's no-load latency."""
        self.limiter.demand(self.in_flight + self.waiting + 1)
        if not self.waiting and self.in_flight < self.limiter.limit:
            self.in_flight += 1
            self.decisions[(tenant, "admitted")] += 1
            return "admitted"
        waiter = self._hold(flow, self.limiter.cost(kind_of(info)))
        if waiter is None:
            raise self._refuse(flow, tenant, headers)
        try:
            async with asyncio.timeout(self.settings.max_wait):
                await waiter.granted
        except TimeoutError:
            if self._cancel(waiter):
                raise self._refuse(flow, tenant, headers) from None
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

    def _hold(self, flow: str, cost: float) -> _Waiter | None:
        """Queue a request in its flow with its start tag; None when the flow's queue (or all of
        them) is full. Start-time fair queuing: a flow's requests start where its previous one
        finishes (in virtual time, by cost), a flow that was idle starts now."""
        length = self.settings.queue_length
        state = self._flows.get(flow)
        if self.waiting >= length * QUEUED_FLOWS or (len(state.held) if state else 0) >= length:
            return None
        if state is None:
            state = self._flows[flow] = _Flow(self._now)
        start = max(self._now, state.finish)
        state.finish = start + cost
        waiter = _Waiter(flow, asyncio.get_running_loop().create_future(), start)
        state.held.append(waiter)
        self.waiting += 1
        self._dispatch()  # the limit may have grown since the last slot was freed
        return waiter

    def _dispatch(self) -> None:
        """Hand free slots to held requests, the earliest start tag first."""
        flows = self._flows
        while flows and self.in_flight < self.limiter.limit:
            name, state = min(flows.items(), key=lambda item: item[1].held[0].start)
            waiter = state.held.popleft()
            if not state.held:
                del flows[name]
            self._now = waiter.start
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
        state = self._flows[waiter.flow]
        state.held.remove(waiter)
        if not state.held:
            del self._flows[waiter.flow]
        self.waiting -= 1
        return True

    def report(self, seconds: float, info: RequestInfo, *, status: int = 0,
               error: GuardError | None = None) -> None:
        """How one exchange that held a slot went, `seconds` after it was sent: the api-server's
        answer `status`, or the `error` guard answers instead."""
        outcome = result_of(status) if error is None else failure_of(error)
        if outcome is not None:
            self.observe(seconds, outcome, info)

    def observe(self, seconds: float, outcome: Result, info: RequestInfo) -> None:
        self.limiter.observe(seconds, outcome, kind_of(info))
        self._dispatch()

    def _refuse(self, flow: str, tenant: str, headers: Sequence[tuple[str, str]]) -> AtCapacity:
        """A 429 whose Retry-After is about how long the flow's own backlog takes to drain at its
        share of the slots: a flooding tenant is told to wait longer than a light one."""
        self.decisions[(tenant, "overload")] += 1
        state = self._flows.get(flow)
        backlog = (state.finish - self._now) if state is not None else 0.0
        drain = backlog * max(1, len(self._flows)) / max(1, self.limiter.limit)
        return AtCapacity(min(MAX_RETRY_AFTER, 1 + int(drain)), headers)

    def snapshot(self) -> dict[str, Any]:
        """/debug/guard/adaptive: the limiter's state, slots, held requests and decisions."""
        decided: Counter[str] = Counter()
        for (_, decision), n in self.decisions.items():
            decided[decision] += n
        return {"cluster": self.cluster, "enabled": True, **self.limiter.snapshot(),
                "inFlight": self.in_flight, "waiting": self.waiting, "flowsWaiting": len(self._flows),
                "queueLength": self.settings.queue_length, "maxWait": self.settings.max_wait,
                "decisions": dict(decided)}
