"""One api-server endpoint's health: a circuit breaker fed by connection outcomes and health checks,
and the slow-start weight of an endpoint that has just come back.

closed: requests flow. `failures` consecutive failures (a refused or broken connection, a timeout, a
failed /readyz check) open it: no request is sent there for `coolDown` seconds; then one request
(or the next passing check) goes through as a half-open probe. Any answer closes the circuit and
starts slow start; a failure opens it for another cool-down. A probe that never reports (its
request was cancelled) frees the next probe one cool-down later. An answer is an answer: the
api-server's own 429 or 5xx is load, not death, and never opens a circuit (moving its load onto
the other endpoints would only topple them in turn). With Redis, the fleet's views of the endpoint
may open or close the circuit too (`adopt_open`, `adopt_closed`; see guard.routing.shared).

Pure: time comes in as arguments; no clock, no I/O, no framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from guard.routing.config import HealthSettings

State = Literal["closed", "open", "half-open"]
MIN_WEIGHT = 0.1
"""The share an endpoint starts its slow start with (Envoy's default minimum weight, 10 %)."""


@dataclass(frozen=True)
class FleetView:
    """What the other live replicas sharing Redis see of this endpoint, as of the last fold."""

    replicas: int
    """Live replicas that publish a view of this endpoint, this one included."""
    open: int
    """Of those, how many see its circuit open or half-open (this one included)."""
    in_flight: int
    """Requests the other replicas have in flight there."""
    states: tuple[tuple[str, State], ...] = ()
    """(replica id, circuit state) of every other replica, for /debug/guard/upstreams."""


class EndpointHealth:
    """The breaker state of one endpoint. Kept across settings reloads for an unchanged URL."""

    __slots__ = ("answered_at", "closed_at", "consecutive", "credit", "elsewhere", "failures", "fleet",
                 "fleet_closes", "fleet_opens", "last_failure", "opened_at", "opens", "retry_at", "settings",
                 "source", "state", "warm_since")

    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings
        self.state: State = "closed"
        self.consecutive = 0
        """Failures since the last answer."""
        self.retry_at = 0.0
        """When open: when the next probe may go."""
        self.warm_since: float | None = None
        """When slow start began; None: not warming."""
        self.credit = 0.0
        self.failures = 0
        """Failures ever seen (for metrics)."""
        self.opens = 0
        """Times the circuit opened (for metrics)."""
        self.last_failure = ""
        self.opened_at: float | None = None
        """When the circuit last opened (a closed or half-open one), or the fleet's opening it adopted."""
        self.closed_at: float | None = None
        """When an open circuit last closed again (its recovery), or the fleet's recovery it adopted."""
        self.answered_at: float | None = None
        """When the endpoint last answered a request or passed a check."""
        self.source: Literal["local", "fleet"] = "local"
        """Whose evidence set the current state: this replica's own outcomes, or the fleet's views."""
        self.elsewhere = 0
        """Requests the other replicas have in flight here (0 without Redis); balance adds it."""
        self.fleet: FleetView | None = None
        """The fleet's view at the last fold; None without Redis or while it is unreachable."""
        self.fleet_opens = 0
        """Times the fleet's views opened this circuit (for metrics)."""
        self.fleet_closes = 0
        """Times the fleet's views closed this circuit (for metrics)."""

    @property
    def up(self) -> bool:
        return self.state == "closed"

    def probe_due(self, now: float) -> bool:
        """The circuit is not closed and its cool-down is over: the next request may probe."""
        return self.state != "closed" and now >= self.retry_at

    def start_probe(self, now: float) -> None:
        self.state = "half-open"
        self.retry_at = now + self.settings.cool_down

    def succeeded(self, now: float) -> None:
        """An answer came (any status) or a check passed."""
        self.consecutive = 0
        self.answered_at = now
        if self.state != "closed":
            self.state, self.source, self.closed_at = "closed", "local", now
            if self.settings.slow_start > 0:
                self.warm_since, self.credit = now, 0.0

    def failed(self, now: float, reason: str) -> None:
        """A connection could not be opened or broke before an answer, a request timed out, or a
        check failed. `reason` is a short kind (an exception's name), never a message."""
        self.consecutive += 1
        self.failures += 1
        self.last_failure = reason
        if self.state == "closed":
            if self.consecutive < self.settings.failures:
                return
            self.opens += 1
        if self.state != "open":  # a failure while already open is no news (an old request's)
            self.opened_at, self.source = now, "local"
        self.state = "open"
        self.warm_since = None
        self.retry_at = now + self.settings.cool_down

    def adopt_open(self, now: float, opened: float) -> None:
        """The fleet sees this endpoint dead (see guard.routing.shared): open the circuit as if this
        replica had seen `failures` failures at `opened`, its probe due one cool-down from now."""
        self.state, self.source, self.opened_at = "open", "fleet", opened
        self.warm_since = None
        self.retry_at = now + self.settings.cool_down
        self.fleet_opens += 1

    def adopt_closed(self, now: float, recovered: float) -> None:
        """The fleet heard the endpoint answer since it last opened: close the circuit, with slow start
        counted from `recovered` (the fleet's first recovery), so every replica ramps together."""
        self.consecutive = 0
        self.state, self.source, self.closed_at = "closed", "fleet", recovered
        self.fleet_closes += 1
        self.warm_since = None
        if self.settings.slow_start > 0 and now - recovered < self.settings.slow_start:
            self.warm_since, self.credit = recovered, 0.0

    def weight(self, now: float) -> float:
        """The share of new requests this endpoint is due: ramps linearly from MIN_WEIGHT to 1 over
        `slowStart` seconds after it came back; 1 otherwise."""
        since = self.warm_since
        if since is None:
            return 1.0
        ramp, elapsed = self.settings.slow_start, now - since
        if ramp <= 0 or elapsed >= ramp:
            self.warm_since = None
            return 1.0
        return max(MIN_WEIGHT, elapsed / ramp)

    def take_turn(self, now: float, share: float) -> bool:
        """Slow start: may this warming endpoint take the next request? Each call adds its weight
        times its fair `share` (1/N of N endpoints) to a credit capped at one turn; a turn taken costs
        a whole one (`took`), so it takes about weight/N of the requests: its fair share, scaled.
        Deterministic, unlike a coin toss per request."""
        self.credit = min(1.0, self.credit + self.weight(now) * share)
        return self.credit >= 1.0

    def took(self) -> None:
        """The endpoint was chosen: spend a turn of slow-start credit."""
        if self.warm_since is not None:
            self.credit = max(0.0, self.credit - 1.0)

    def snapshot(self, now: float) -> dict[str, Any]:
        return {"state": self.state, "up": self.up, "weight": round(self.weight(now), 3),
                "consecutiveFailures": self.consecutive, "failures": self.failures, "opens": self.opens,
                "lastFailure": self.last_failure,
                "retryIn": round(max(0.0, self.retry_at - now), 3) if not self.up else 0.0,
                "source": self.source, "fleet": self._fleet_snapshot()}

    def _fleet_snapshot(self) -> dict[str, Any] | None:
        fleet = self.fleet
        if fleet is None and not (self.fleet_opens or self.fleet_closes):
            return None
        shown: dict[str, Any] = {"opens": self.fleet_opens, "closes": self.fleet_closes}
        if fleet is not None:
            shown.update(replicas=fleet.replicas, open=fleet.open, inFlightElsewhere=fleet.in_flight,
                         views=dict(fleet.states))
        return shown
