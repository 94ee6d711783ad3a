"""A circuit breaker for the calls guard makes to Redis, with the clock and jitter injected.

Closed: calls go through. Open after `failures` consecutive failures or when more than half of
the calls within `window` seconds failed: no call goes through until a probe is due (every
`probe_interval` seconds, jittered), which half-opens the breaker; the probe's success closes it,
its failure re-opens it. Pure: no I/O, no real clock, no framework.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half-open"]


@dataclass(frozen=True)
class BreakerConfig:
    failures: int = 3
    """Consecutive failures that open the breaker."""
    window: float = 1.0
    """Seconds over which the error ratio is judged."""
    min_calls: int = 4
    """Calls within `window` before the ratio counts (a single failure is not 100 %)."""
    probe_interval: float = 0.5
    """Seconds between probes while open; each is stretched by up to 100 % jitter. Until every
    replica's probe has succeeded after an outage, the recovered ones lease from Redis while the
    others still spend rate/N locally, so a shorter interval narrows that over-admission (the
    Redis-restart flood: 819-849 admitted with 1 s, 818-831 with 0.5 s, bound 848)."""


class Breaker:
    """Decides whether a call may go to Redis, from the outcomes of past calls."""

    def __init__(self, clock: Callable[[], float], *, config: BreakerConfig | None = None,
                 jitter: Callable[[], float] = lambda: 0.5,
                 on_change: Callable[[State, State], None] | None = None) -> None:
        self._clock = clock
        self._config = config or BreakerConfig()
        self._jitter = jitter
        self._on_change = on_change
        self.state: State = "closed"
        self._consecutive = 0
        self._recent: deque[tuple[float, bool]] = deque()
        self._probe_at = 0.0

    def allow(self) -> bool:
        """Whether a call may be made now; while open, lets one probe through when it is due."""
        if self.state == "closed":
            return True
        if self.state == "open" and self._clock() >= self._probe_at:
            self._set("half-open")
            return True
        return False

    def success(self) -> None:
        self._consecutive = 0
        self._record(ok=True)
        if self.state != "closed":
            self._recent.clear()
            self._set("closed")

    def failure(self) -> None:
        self._consecutive += 1
        self._record(ok=False)
        if self.state == "half-open" or self._should_open():
            self._open()

    def trip(self) -> None:
        """Open now, without waiting for failures to add up (Redis was down at startup)."""
        if self.state == "closed":
            self._open()

    def _record(self, *, ok: bool) -> None:
        now = self._clock()
        self._recent.append((now, ok))
        while self._recent and self._recent[0][0] < now - self._config.window:
            self._recent.popleft()

    def _should_open(self) -> bool:
        if self.state != "closed":
            return False
        if self._consecutive >= self._config.failures:
            return True
        failed = sum(1 for _, ok in self._recent if not ok)
        return len(self._recent) >= self._config.min_calls and failed * 2 > len(self._recent)

    def _open(self) -> None:
        interval = self._config.probe_interval
        self._probe_at = self._clock() + interval * (1.0 + self._jitter())
        self._set("open")

    def _set(self, state: State) -> None:
        old, self.state = self.state, state
        if old != state and self._on_change is not None:
            self._on_change(old, state)
