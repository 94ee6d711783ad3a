"""The fleet simulation's tables: Redis cost per phase, failure domains, propagation, the Redis
Cluster's spread, and the projection from the measured per-call costs to larger fleets.

The projection assumes what a real deployment runs: one guard process per cluster replica (the
simulation packs many clusters into each process), each paying per second what a simulated process
paid apart from the cluster health exchange (membership, quarantine, bundle polls: `background`),
the health exchange once per cluster it fronts per heartbeat, and its lease calls — as measured per
process (an upper bound for a replica that sees fewer tenants), and at most one per tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos.fleet import Phase, Results

TICK = 0.040
"""guard's default lease tick: a replica makes at most one lease call per tick (per Redis Cluster slot)."""


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(header), "| " + " | ".join("-" * w for w in widths) + " |", *map(line, rows)])


def ratio(a: float, b: float) -> float:
    return a / b if b else math.inf


def cost_rows(phases: list[Phase]) -> list[list[str]]:
    rows = []
    for p in phases:
        admitted = p.admitted
        rows.append([p.name, f"{admitted / p.seconds:.0f}", f"{1000 * p.redis.cpu / p.seconds:.1f}",
                     f"{1e6 * ratio(p.redis.cpu, admitted):.1f}" if admitted else "-",  # ms per 1,000
                     f"{p.redis.round_trips / p.seconds:.0f}",
                     f"{ratio(p.redis.round_trips, admitted):.3f}" if admitted else "-",
                     f"{ratio(p.lease_calls, p.steady.admitted):.3f}" if p.steady.admitted else "-",
                     f"{p.health_calls / p.seconds:.0f}",
                     f"{p.steady.statuses[429] + p.runaway.statuses[429]}",
                     f"{p.steady.failed + p.runaway.failed}"])
    return rows


COST_HEADER = ["phase", "admitted/s", "Redis CPU ms/s", "Redis CPU ms per 1,000 admitted",
               "Redis calls/s", "Redis calls per admitted", "lease calls per admitted (steady)",
               "health calls/s", "429", "failed"]


def fault_rows(baseline: Phase, faults: list[Phase]) -> list[list[str]]:
    base = baseline.steady.p99()
    rows = []
    for p in [baseline, *faults]:
        t = p.steady
        rows.append([p.name, f"{t.admitted}", f"{t.statuses[429]}", f"{t.failed}", f"{1000 * t.p50():.1f}",
                     f"{1000 * t.p99():.1f}", f"{ratio(t.p99(), base):.2f}"])
    return rows


def propagation_rows(propagation: dict[str, list[float]]) -> list[list[str]]:
    rows = []
    for event, times in propagation.items():
        finite = [t for t in times if math.isfinite(t)]
        rows.append([event, f"{len(finite)} of {len(times)}",
                     f"{1000 * min(finite):.0f}" if finite else "-",
                     f"{1000 * max(finite):.0f}" if finite else "-"])
    return rows


def spread_rows(phase: Phase) -> list[list[str]]:
    calls, keys = phase.redis.per_node_calls, phase.redis.per_node_keys
    total_calls, total_keys = sum(calls) or 1, sum(keys) or 1
    return [[f"master {i + 1}", f"{k}", f"{100 * k / total_keys:.0f} %", f"{c / phase.seconds:.0f}",
             f"{100 * c / total_calls:.0f} %"] for i, (k, c) in enumerate(zip(keys, calls, strict=True))]


@dataclass(frozen=True)
class Costs:
    """What the simulation measured, per unit the projection scales by."""

    fixed_call: float
    """Redis CPU seconds per call of the idle fleet (heartbeats, health, polls; cron included)."""
    background: float
    """Calls per guard process per second besides the health exchange and leases."""
    health: float
    """Health exchanges per cluster replica per second."""
    pair: float
    """Redis CPU seconds per second that leasing one (process, tenant) key costs: (steady - idle
    CPU) / the pairs the steady load kept busy."""
    pair_calls: float
    """Lease calls per second per (process, tenant) pair (bounded by one per tick per process)."""

    @staticmethod
    def measured(results: Results) -> Costs:
        idle, steady = results.phases[0], results.phases[1]
        shape = results.shape
        pairs = results.processes * min(shape.tenants, math.ceil(shape.clusters / shape.groups))
        rest = max(0.0, idle.redis.round_trips - idle.health_calls - idle.lease_calls)
        return Costs(fixed_call=ratio(idle.redis.cpu, idle.redis.round_trips),
                     background=rest / results.processes / idle.seconds,
                     health=idle.health_calls / (shape.clusters * shape.replicas) / idle.seconds,
                     pair=max(0.0, steady.redis.cpu / steady.seconds - idle.redis.cpu / idle.seconds) / pairs,
                     pair_calls=steady.lease_calls / steady.seconds / pairs)


@dataclass(frozen=True)
class Fleet:
    clusters: int
    rate: int
    packing: int
    """Clusters one guard process fronts."""

    @property
    def processes(self) -> int:
        return math.ceil(self.clusters / self.packing) * 3

    @property
    def pairs(self) -> int:
        """(process, tenant) keys in use: one tenant per cluster, as in the simulation."""
        return self.processes * self.packing


def project(costs: Costs, fleet: Fleet) -> list[str]:
    fixed = fleet.processes * costs.background + fleet.clusters * 3 * costs.health
    lease = min(fleet.pairs * costs.pair_calls, fleet.processes / TICK)
    cpu = fixed * costs.fixed_call + fleet.pairs * costs.pair
    return [f"{fleet.clusters} x 3", f"{fleet.packing}", f"{fleet.processes:,}", f"{fleet.rate:,}",
            f"{lease:,.0f}", f"{fixed:,.0f}", f"{lease / fleet.rate:.3f}",
            f"{(lease + fixed) / fleet.rate:.3f}",
            f"{100 * cpu:.1f} %"]


def projection_rows(costs: Costs, packing: int) -> list[list[str]]:
    return [project(costs, Fleet(clusters, rate, pack))
            for clusters, rate in ((100, 100_000), (1000, 100_000), (1000, 1_000_000))
            for pack in sorted({1, packing})]


PROJECTION_HEADER = ["fleet", "clusters per process", "guard processes", "requests/s", "lease calls/s",
                     "other calls/s", "lease calls per request", "Redis calls per request", "one Redis core"]


def render(results: Results) -> str:
    parts = ["", "Redis cost (single redis-server):", table(COST_HEADER, cost_rows(results.phases))]
    if results.faults and len(results.phases) > 1:
        baseline = results.phases[1]  # the steady load with Redis answering at once
        parts += ["", "Admitted requests while Redis is slow or gone (fault proxy between guard and Redis):",
                  table(["Redis", "admitted", "429", "failed", "p50 ms", "p99 ms", "p99 / Redis up"],
                        fault_rows(baseline, results.faults))]
    if results.propagation:
        parts += ["", "In force on every replica (from the change: its pub/sub message, or the api-server",
                  "stopping to answer):",
                  table(["change", "replicas", "first ms", "last ms"], propagation_rows(results.propagation))]
    if results.cluster is not None:
        parts += ["", "Redis Cluster (3 masters), steady load:",
                  table(COST_HEADER, cost_rows([results.cluster])),
                  table(["node", "keys", "share", "calls/s", "share"], spread_rows(results.cluster))]
    elif results.cluster_note:
        parts += ["", results.cluster_note]
    if len(results.phases) > 1 and results.phases[0].steady.admitted == 0:
        costs = Costs.measured(results)
        packing = math.ceil(results.shape.clusters / results.shape.groups)
        parts += ["", f"Measured: {1e6 * costs.fixed_call:.0f} us of Redis CPU per call of the idle fleet; "
                      f"{costs.background:.1f} calls/s per guard process besides health",
                  f"({costs.health:.2f}/s per cluster replica) and leases; leasing one (process, tenant) key "
                  f"costs {1000 * costs.pair:.2f} ms/s of Redis CPU and {costs.pair_calls:.2f} calls/s.",
                  "Projection:", table(PROJECTION_HEADER, projection_rows(costs, packing))]
    return "\n".join(parts)
