"""Which endpoint of a cluster takes the next request: least in flight among the healthy ones.

In order: an endpoint whose open circuit is due a probe (so it comes back as soon as it can); else
the least busy closed endpoint, a warming one only when slow start gives it a turn (about its fair
share of requests times its weight); else a warming one anyway (the others are gone); else the
least busy of all, circuits open or not — when every endpoint looks dead, trying one is a better
chance than a 503. Ties rotate with `start`, so equal endpoints share the load evenly. "Busy" is
this replica's requests in flight plus, with Redis, the other replicas' (`EndpointHealth.elsewhere`,
as of their last published views).
Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Protocol, TypeVar

from guard.routing.breaker import EndpointHealth


class Balanced(Protocol):
    @property
    def in_flight(self) -> int: ...
    @property
    def health(self) -> EndpointHealth: ...


E = TypeVar("E", bound=Balanced)


def choose(endpoints: Sequence[E], now: float, start: int, skip: Container[int] = ()) -> E | None:
    """The endpoint for the next request; `skip` holds `id()`s of endpoints this request already
    tried. None when every endpoint is skipped."""
    n = len(endpoints)
    best: E | None = None
    warming: E | None = None
    fallback: E | None = None
    fallback_load = warming_load = best_load = 0
    for i in range(n):
        ep = endpoints[(start + i) % n]
        if id(ep) in skip:
            continue
        health = ep.health
        load = ep.in_flight + health.elsewhere
        if fallback is None or load < fallback_load:
            fallback, fallback_load = ep, load
        if health.state != "closed":
            if health.probe_due(now):
                health.start_probe(now)
                return ep
            continue
        if health.warm_since is not None and not health.take_turn(now, 1 / n):
            if warming is None or load < warming_load:
                warming, warming_load = ep, load
            continue
        if best is None or load < best_load:
            best, best_load = ep, load
    chosen = best or warming or fallback
    if chosen is not None:
        chosen.health.took()
    return chosen
