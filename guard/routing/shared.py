"""One endpoint's health as the fleet sees it, folded into this replica's breaker.

With Redis, every replica publishes a `View` of each endpoint: its circuit state, consecutive
failures, requests in flight, and when its circuit last opened, when it last recovered (an open
circuit closed again) and when the endpoint last answered it. `fold` merges the other live replicas'
views into the local `EndpointHealth`; the newest event decides:

- **open together**: when at least half of the live replicas that know the endpoint (this one
  included; with two replicas, one is enough) see its circuit open or half-open, and no replica has
  heard it answer since the latest opening, a closed circuit here opens too (`adopt_open`): no
  request goes there until a probe here after the cool-down, or until another replica hears it answer.
- **close together**: when some replica heard it answer after the latest opening any replica saw,
  a circuit the fleet opened here closes (`adopt_closed`); one that this replica's own failures
  opened closes only on a recovery (another replica's circuit closing again after that opening):
  answers of a replica that never lost the endpoint say nothing about this replica's own path to it.
  Slow start counts from the fleet's first recovery after the opening, and a circuit already warming
  here moves its start back to that recovery, so every replica ramps together.
- **load**: the other replicas' requests in flight there go to `EndpointHealth.elsewhere`, which the
  least-in-flight choice adds to this replica's own.

Times are on this replica's monotonic clock (the adapter converts the others' with Redis's clock).
Pure: no clock, no I/O, no framework. It never decides on a replica's own view alone: without
others, the local breaker is the whole truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from guard.routing.breaker import EndpointHealth, FleetView, State


@dataclass(frozen=True)
class View:
    """One replica's view of one endpoint."""

    state: State
    consecutive: int = 0
    in_flight: int = 0
    opened: float | None = None
    """When its circuit last opened (None: never)."""
    closed: float | None = None
    """When its circuit last closed again after being open (None: never)."""
    answered: float | None = None
    """When the endpoint last answered it (None: never)."""
    replica: str = ""


def local_view(health: EndpointHealth, in_flight: int) -> View:
    """This replica's view, as it publishes it."""
    return View(health.state, health.consecutive, in_flight, health.opened_at, health.closed_at,
                health.answered_at)


def quorum(open_views: int, replicas: int) -> bool:
    """At least half of the live replicas that know the endpoint see it open."""
    return open_views > 0 and 2 * open_views >= replicas


def fold(health: EndpointHealth, others: Sequence[View], now: float, in_flight: int = 0) -> None:
    """Merge `others` (the other live replicas' views of this endpoint) into `health`."""
    seen_open = sum(1 for v in others if v.state != "closed")
    health.elsewhere = sum(v.in_flight for v in others)
    if others:
        _decide(health, [local_view(health, in_flight), *others], seen_open + (health.state != "closed"), now)
    health.fleet = FleetView(1 + len(others), seen_open + (health.state != "closed"), health.elsewhere,
                             tuple((v.replica, v.state) for v in others))


def _decide(health: EndpointHealth, views: Sequence[View], votes: int, now: float) -> None:
    """Open or close the local circuit on the fleet's word, or move its slow start back."""
    opened = _latest(v.opened for v in views)
    answered = _latest(v.answered for v in views)
    if opened is not None and (answered is None or opened > answered):
        if health.state == "closed" and quorum(votes, len(views)):
            health.adopt_open(now, opened)
        return
    if answered is None:
        return
    recovered = _first_recovery(views, opened)
    if health.state != "closed":
        if health.source == "fleet":
            health.adopt_closed(now, now if recovered is None else recovered)
        elif recovered is not None:  # opened on this replica's own failures: only a recovery undoes them
            health.adopt_closed(now, recovered)
    elif recovered is not None and health.warm_since is not None and recovered < health.warm_since:
        health.warm_since = health.closed_at = recovered


def forget(health: EndpointHealth) -> None:
    """Redis is unreachable: back to the local view alone (an adopted state stays until its probe)."""
    health.elsewhere = 0
    health.fleet = None


def _latest(times: Iterable[float | None]) -> float | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _first_recovery(views: Sequence[View], opened: float | None) -> float | None:
    """The earliest recovery any replica saw after the latest opening."""
    return min((v.closed for v in views if v.closed is not None and (opened is None or v.closed > opened)),
               default=None)
