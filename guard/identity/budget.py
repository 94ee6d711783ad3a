"""Review budgets: how many reviews (TokenReviews of tokens guard has never seen, SubjectAccessReviews
of impersonation) one client may make guard send, and how many all clients together may.

Each review is made with guard's own credential, which the api-server's APF usually exempts or
favours, so a client that costs nothing to itself (a new garbage token per request) could make
guard flood the api-server. A budget is a token bucket per client (bounded: the least recently seen
clients are forgotten, which only refills their bucket — the overall bucket still holds) and one
overall; a review is made only when both have a token. Pure: clock injected, no I/O.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

CLIENTS_KEPT = 10_000
"""Per-client buckets remembered at once."""


@dataclass(frozen=True)
class Rate:
    """A token bucket's refill per second and size."""

    rate: float
    burst: float


class _Bucket:
    __slots__ = ("tokens", "when")

    def __init__(self, tokens: float, when: float) -> None:
        self.tokens, self.when = tokens, when

    def refill(self, limit: Rate, now: float) -> None:
        self.tokens = min(limit.burst, self.tokens + (now - self.when) * limit.rate)
        self.when = now

    def wait(self, limit: Rate) -> float:
        """Seconds until one token is there (0 when it is)."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / limit.rate if limit.rate > 0 else math.inf


class ReviewBudget:
    """Per-client and overall token buckets for reviews."""

    def __init__(self, per_client: Rate, overall: Rate, *, clock: Callable[[], float]) -> None:
        self.per_client, self.overall = per_client, overall
        self._clock = clock
        self._clients: OrderedDict[str, _Bucket] = OrderedDict()
        self._all = _Bucket(overall.burst, clock())

    def take(self, client: str) -> float:
        """0 when a review may be made for `client` (a token is taken from both buckets), else the
        seconds until one may."""
        now = self._clock()
        mine = self._clients.get(client)
        if mine is None:
            mine = self._clients[client] = _Bucket(self.per_client.burst, now)
            while len(self._clients) > CLIENTS_KEPT:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
        mine.refill(self.per_client, now)
        self._all.refill(self.overall, now)
        wait = max(mine.wait(self.per_client), self._all.wait(self.overall))
        if wait > 0:
            return wait
        mine.tokens -= 1
        self._all.tokens -= 1
        return 0.0


def retry_after(wait: float) -> int:
    """The integer Retry-After a client is told for `wait` seconds (1 to 60)."""
    return max(1, min(60, math.ceil(wait))) if math.isfinite(wait) else 60
