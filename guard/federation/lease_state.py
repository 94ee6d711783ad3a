"""One replica's local view of one global bucket: lease tokens, demand, and the fallback bucket.

Pure arithmetic on an injected time `now`: sizing a lease from local demand and the Redis round
trip, spending lease tokens, and the local fallback bucket (rate/N, burst/N) used while Redis is
unreachable. It never talks to Redis and never reads a clock; `guard.federation.leases` drives it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from guard.admission.store import Limit, Take

DEMAND_SMOOTHING = 0.5  # weight of the newest demand sample; quick enough to follow a flood
MIN_SAMPLE = 0.02  # seconds: shorter sampling periods would turn one request into a huge rate


@dataclass
class FallbackBucket:
    """A plain token bucket for the outage: starts empty so that the handover adds no burst."""

    tokens: float
    stamp: float

    def take(self, now: float, rate: float, burst: float, cost: float) -> Take:
        self.tokens = min(burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return Take(True, self.tokens, 0.0, (burst - self.tokens) / rate)
        return Take(False, self.tokens, (cost - self.tokens) / rate, (burst - self.tokens) / rate)


@dataclass
class KeyState:
    """Everything a replica knows about one bucket key."""

    redis_key: str
    limit: Limit
    tokens: float = 0.0
    """Spendable tokens: leased (already debited from the global bucket) plus `credit`."""
    expires: float = 0.0
    """When unspent lease tokens lapse."""
    credit: float = 0.0
    """How many of `tokens` no grant has paid for (a starter allowance). Spending one turns it
    into debt; one that lapses unspent is owed to nobody."""
    debt: float = 0.0
    """Tokens spent on credit (starter tokens, borrowing between leases) that no grant has paid
    for yet; the next grants pay them back first."""
    requested: float = 0.0
    """Tokens asked for (admitted or not) since the last demand sample."""
    demand: float = 0.0
    """Smoothed local demand in tokens per second."""
    sampled: float = 0.0
    ahead: float = 0.0
    """Seconds the global bucket's TAT was ahead of Redis's clock at the last reply."""
    replied: float = 0.0
    next_ask: float = 0.0
    """Do not ask Redis before this time (the global bucket was drained at the last ask)."""
    last_used: float = 0.0
    max_cost: float = 1.0
    fallback: FallbackBucket | None = None

    def spend(self, now: float, cost: float) -> bool:
        """Debit `cost` lease tokens if that many are spendable."""
        self.requested += cost
        self.last_used = now
        self.max_cost = max(self.max_cost, cost)
        self.lapse(now)
        if self.tokens >= cost:
            self.tokens -= cost
            on_credit = min(cost, self.credit)
            self.credit -= on_credit
            self.debt += on_credit
            return True
        return False

    def lapse(self, now: float) -> None:
        """Drop tokens whose lease ran out, credit included: what stays owed is what was spent."""
        if now >= self.expires:
            self.tokens = self.credit = 0.0

    @property
    def owed(self) -> float:
        """Tokens this replica holds or has spent beyond what Redis granted it."""
        return self.credit + self.debt

    def lease_size(self, live: int, rtt: float, lease_ttl: float) -> float:
        """L = clamp(demand x (ttl + rtt), 1, burst / 2N), and never below the largest cost seen."""
        ceiling = max(1.0, self.limit.burst / (2 * live))
        return max(self.max_cost, min(max(1.0, self.demand * (lease_ttl + rtt)), ceiling))

    def sample_demand(self, now: float) -> None:
        elapsed = now - self.sampled
        if elapsed < MIN_SAMPLE:
            return  # one request over a sliver of time is not a flood
        rate = self.requested / elapsed
        self.demand = DEMAND_SMOOTHING * rate + (1 - DEMAND_SMOOTHING) * self.demand
        self.requested = 0.0
        self.sampled = now

    def want(self, now: float, live: int, rtt: float, lease_ttl: float) -> int:
        """Tokens to ask for now: 0 while the tokens already paid for stay above the 50 %
        watermark, or while backing off. Tokens held or spent on credit (a starter allowance) do
        not count as paid for: a key living on them asks at the next tick, so the debt is settled
        while the starter lasts instead of the starter lapsing before any lease was asked for and
        leaving a gap of 429s (the bench tenant under a 1,000,000/s quota lost 0.5-2.3 % of its
        requests that way)."""
        if now < self.next_ask:
            return 0
        self.lapse(now)
        size = self.lease_size(live, rtt, lease_ttl)
        paid_for = self.tokens - self.owed
        if paid_for >= size / 2:
            return 0
        return math.ceil(size - paid_for)

    def grant(self, now: float, asked: int, granted: int, ahead: float, *, live: int,
              lease_ttl: float) -> None:
        """Apply a lease reply; a short grant means the global bucket is empty: back off a share."""
        self.lapse(now)
        paid = min(self.debt, granted)
        self.debt -= paid
        self.tokens += granted - paid
        self.expires = now + lease_ttl
        self.ahead, self.replied = ahead, now
        if granted > 0:
            self.fallback = None  # leasing works again: the outage bucket has done its job
        if granted < asked:
            share_wait = asked / 2 * live / self.limit.rate
            self.next_ask = now + min(lease_ttl, share_wait)

    def state(self, now: float, allowed: bool, cost: float, live: int) -> Take:
        """The `Take` to answer, from the lease and the last known global bucket state."""
        elapsed = now - self.replied
        interval = 1.0 / self.limit.rate
        tau = self.limit.burst * interval
        reset = max(0.0, self.ahead - elapsed)
        if allowed:
            return Take(True, self.tokens, 0.0, reset)
        global_wait = self.ahead - elapsed - tau + cost * interval
        share_wait = (cost - self.tokens) * live * interval
        return Take(False, self.tokens, max(global_wait, share_wait, 0.001), reset)
