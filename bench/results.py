"""The figures one benchmark run produced, and the issue-7 targets judged against them.
Plain values and arithmetic (medians, ratios, verdicts); rendering is bench.report's job, and
nothing here measures or starts anything.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.h2 import WatchMemory
from bench.load import LoadResult
from bench.memory import ListFigure, WatchPoint

MIB = 1024 * 1024
WATCH_GOAL = 10_000


@dataclass(frozen=True)
class Throughput:
    """One target's rounds (empty and `skipped` set when it could not run)."""

    name: str
    what: str
    rounds: tuple[LoadResult, ...] = ()
    skipped: str = ""

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.rounds) if self.rounds else 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.rounds) if self.rounds else 0.0

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.rounds) if self.rounds else 0.0

    @property
    def cpu_us(self) -> float:
        """CPU time per request, µs (median over rounds): the work a target does, apart from how
        the two cores were shared with wrk and the upstream."""
        return statistics.median(r.cpu_us for r in self.rounds) if self.rounds else 0.0

    @property
    def failed_share(self) -> float:
        return max((r.failed_share for r in self.rounds), default=0.0)


@dataclass(frozen=True)
class DecisionCost:
    p50_us: float
    p99_us: float
    decisions: int


@dataclass
class Results:
    machine: dict[str, str] = field(default_factory=dict)
    upstream_choice: list[tuple[str, str]] = field(default_factory=list)
    throughput: list[Throughput] = field(default_factory=list)
    watches: list[WatchPoint] = field(default_factory=list)
    watches_skipped: str = ""
    lists: dict[str, ListFigure | str] = field(default_factory=dict)
    decision: DecisionCost | str = "not run"
    h2_watches: WatchMemory | str = "not run"
    """Memory per idle watch over HTTP/2 (streams of one connection) and HTTP/1.1 (bench.h2)."""
    notes: list[str] = field(default_factory=list)

    def target(self, name: str) -> Throughput | None:
        found = [t for t in self.throughput if t.name == name and t.rounds]
        return found[0] if found else None

    def ratio(self, name: str, baseline: str) -> float | None:
        one, base = self.target(name), self.target(baseline)
        return one.rps / base.rps if one and base and base.rps else None


@dataclass(frozen=True)
class Verdict:
    goal: str
    measured: str
    met: bool | None
    """None: not measured in this run."""


def watches_at_goal(points: list[WatchPoint]) -> tuple[float, bool] | None:
    """RSS at 10,000 watches in bytes, and whether it was extrapolated (file limits may cap the count)."""
    grown = [p for i, p in enumerate(points) if i == 0 or p.opened > points[i - 1].opened]
    if len(grown) < 2:
        return None
    # The last step that opened more watches than the one before: a later step that opened none
    # measures failed attempts, not held watches.
    first, last = grown[0], grown[-1]
    if last.opened >= WATCH_GOAL:
        return float(last.rss), False
    per_watch = (last.rss - first.rss) / (last.opened - first.opened)
    return first.rss + per_watch * (WATCH_GOAL - first.opened), True


def verdicts(results: Results) -> list[Verdict]:
    return [_headline(results), _headline(results, "guard-w2"), _redis(results),
            _cpu(results, "guard-policies", 0.5), _cpu(results, "guard-redis", 0.6), _watches(results),
            _large_list(results), _decision(results)]


def _cpu(results: Results, name: str, goal_ratio: float) -> Verdict:
    """CPU per request against kubectl proxy's: the work per request, whatever the core sharing."""
    setup = "policies, embedded" if name == "guard-policies" else "policies, Redis"
    goal = f"guard ({setup}) CPU per request ≤ {goal_ratio}x kubectl proxy's"
    guard, kubectl = results.target(name), results.target("kubectl-proxy")
    if guard is None or kubectl is None or not kubectl.cpu_us:
        return Verdict(goal, "not measured", None)
    ratio = guard.cpu_us / kubectl.cpu_us
    return Verdict(goal, f"{ratio:.2f}x ({guard.cpu_us:.0f} vs {kubectl.cpu_us:.0f} µs)", ratio <= goal_ratio)


def _headline(results: Results, name: str = "guard-policies") -> Verdict:
    """The headline target; for `guard-w2` on both cores, as kubectl proxy (Go) uses both."""
    setup = "embedded" if name == "guard-policies" else "embedded, --workers 2, both cores like kubectl proxy"
    goal = f"guard (policies, {setup}) ≥ 1.5x kubectl proxy req/s, p99 ≤ kubectl proxy's"
    ratio = results.ratio(name, "kubectl-proxy")
    guard, kubectl = results.target(name), results.target("kubectl-proxy")
    if ratio is None or guard is None or kubectl is None:
        return Verdict(goal, "not measured", None)
    measured = f"{ratio:.2f}x, p99 {guard.p99_ms:.1f} vs {kubectl.p99_ms:.1f} ms"
    return Verdict(goal, measured, ratio >= 1.5 and guard.p99_ms <= kubectl.p99_ms)


def _redis(results: Results) -> Verdict:
    goal = "guard with Redis ≥ 1.3x kubectl proxy req/s"
    ratio = results.ratio("guard-redis", "kubectl-proxy")
    if ratio is None:
        return Verdict(goal, "not measured", None)
    return Verdict(goal, f"{ratio:.2f}x", ratio >= 1.3)


def _watches(results: Results) -> Verdict:
    goal = "10,000 idle watches: guard RSS ≤ 256 MiB"
    at_goal = watches_at_goal(results.watches)
    if at_goal is None:
        return Verdict(goal, "not measured", None)
    rss, extrapolated = at_goal
    opened = max(p.opened for p in results.watches)
    how = f" (extrapolated from {opened:,} open)" if extrapolated else ""
    return Verdict(goal, f"{rss / MIB:.0f} MiB{how}", rss <= 256 * MIB)


def _large_list(results: Results) -> Verdict:
    goal = "100 MB LIST through guard ≥ 50 % of direct rate, memory bounded (peak growth ≤ 64 MiB)"
    direct, guard = results.lists.get("direct"), results.lists.get("guard")
    if not isinstance(direct, ListFigure) or not isinstance(guard, ListFigure):
        return Verdict(goal, "not measured", None)
    share = guard.rate / direct.rate
    growth = guard.rss_peak - guard.rss_before
    return Verdict(
        goal, f"{share:.0%} of direct, +{growth / MIB:.0f} MiB", share >= 0.5 and growth <= 64 * MIB
    )


def _decision(results: Results) -> Verdict:
    goal = "admission decision ≤ 20 µs p99 (embedded, in-process)"
    if not isinstance(results.decision, DecisionCost):
        return Verdict(goal, "not measured", None)
    cost = results.decision
    return Verdict(goal, f"p50 {cost.p50_us:.1f} µs, p99 {cost.p99_us:.1f} µs", cost.p99_us <= 20)
