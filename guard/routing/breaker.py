"""One api-server endpoint's health: a circuit breaker fed by connection outcomes and health checks,
and the slow-start weight of an endpoint that has just come back.

closed: requests flow. `failures` consecutive failures (a refused or broken connection, a timeout, a
failed /readyz check) open it: no request is sent there for `coolDown` seconds; then one request
(or the next passing check) goes through as a half-open probe. Any answer closes the circuit and
starts slow start; a failure opens it for another cool-down. A probe that never reports (its
request was cancelled) frees the next probe one cool-down later. An answer is an answer: the
api-server's own 429 or 5xx is load, not death, and never opens a circuit (moving its load onto
the other endpoints would only topple them in turn).

Pure: time comes in as arguments; no clock, no I/O, no framework.
"""

from __future__ import annotations

from typing import Any, Literal

from guard.routing.config import HealthSettings

State = Literal["closed", "open", "half-open"]
MIN_WEIGHT = 0.1
"""The share an endpoint starts its slow start with (Envoy's default minimum weight, 10 %)."""


class EndpointHealth:
    """The breaker state of one endpoint. Kept across settings reloads for an unchanged URL."""

    __slots__ = ("consecutive", "credit", "failures", "last_failure", "opens", "retry_at", "settings",
                 "state", "warm_since")

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
        if self.state != "closed":
            self.state = "closed"
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
        self.state = "open"
        self.warm_since = None
        self.retry_at = now + self.settings.cool_down

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
                "retryIn": round(max(0.0, self.retry_at - now), 3) if not self.up else 0.0}
