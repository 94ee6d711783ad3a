"""Counters the admission step keeps for metrics and debugging: decisions per tenant, rule and
outcome, seat waits per priority level and token waits per tenant as histograms, and policy
reloads.

Plain in-process numbers, cheap to bump on the hot path; `guard.telemetry.metrics` turns them into
Prometheus metrics at scrape time. Never holds a user name or a token (tenant and rule names only).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

WAIT_BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class WaitHistogram:
    """Cumulative-ready histogram of queue waits in seconds (`counts[i]` for `<= bounds[i]`,
    the last slot for anything longer)."""

    bounds: tuple[float, ...] = WAIT_BOUNDS
    counts: list[int] = field(default_factory=lambda: [0] * (len(WAIT_BOUNDS) + 1))
    sum: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds
        self.count += 1


@dataclass
class AdmissionStats:
    """decisions[(cluster, tenant, rule, outcome)] counts every verdict; reasons[(cluster, tenant,
    reason)] every rejection (or shadow would-be rejection) by cause: quota, inflight, watches, queue-full,
    queue-wait."""

    decisions: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    reasons: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    queue_waits: dict[str, WaitHistogram] = field(default_factory=dict)
    """Seat waits by priority level."""
    quota_waits: dict[str, WaitHistogram] = field(default_factory=dict)
    """Waits for a token (a request over quota held up to its rule's maxWait, then admitted), by tenant."""
    reloads: int = 0
    reload_failures: int = 0
    last_reload_problems: list[str] = field(default_factory=list)

    def waited(self, level: str, seconds: float) -> None:
        _observe(self.queue_waits, level, seconds)

    def waited_for_tokens(self, tenant: str, seconds: float) -> None:
        _observe(self.quota_waits, tenant, seconds)


def _observe(histograms: dict[str, WaitHistogram], key: str, seconds: float) -> None:
    histogram = histograms.get(key)
    if histogram is None:
        histogram = histograms[key] = WaitHistogram()
    histogram.observe(seconds)
