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
                     f"{1e6 * ratio(p.redis.cpu, admitted):.1f}" if admitted else "-",
                     f"{p.redis.round_trips / p.seconds:.0f}",
                     f"{ratio(p.redis.round_trips, admitted):.3f}" if admitted else "-",
                     f"{ratio(p.lease_calls, p.steady.admitted):.3f}" if p.steady.admitted else "-",
                     f"{p.health_calls / p.seconds:.0f}",
                     f"{p.steady.statuses[429] + p.runaway.statuses[429]}", f"{p.steady.failed + p.runaway.failed}"])
    return rows


COST_HEADER = ["phase", "admitted/s", "Redis CPU ms/s", "Redis CPU ms per 1,000 admitted", "Redis calls/s",
               "Redis calls per admitted", "lease calls per admitted (steady)", "health calls/s", "429", "failed"]


def fault_rows(baseline: Phase, faults: list[Phase]) -> list[list[str]]:
    base = baseline.steady.p99()
    rows = []
    for p in [baseline, *faults]:
        t = p.steady
        rows.append([p.name, f"{t.admitted}", f"{t.failed}", f"{1000 * t.p50():.1f}", f"{1000 * t.p99():.1f}",
                     f"{ratio(t.p99(), base):.2f}"])
    return rows


def propagation_rows(propagation: dict[str, list[float]]) -> list[list[str]]:
    rows = []
    for event, times in propagation.items():
        finite = [t for t in times if math.isfinite(t)]
        rows.append([event, f"{len(finite)} of {len(times)}",
                     f"{1000 * min(finite):.0f}" if finite else "-", f"{1000 * max(finite):.0f}" if finite else "-"])
    return rows


def spread_rows(phase: Phase) -> list[list[str]]:
    calls, keys = phase.redis.per_node_calls, phase.redis.per_node_keys
    total_calls, total_keys = sum(calls) or 1, sum(keys) or 1
    return [[f"master {i + 1}", f"{k}", f"{100 * k / total_keys:.0f} %", f"{c / phase.seconds:.0f}",
             f"{100 * c / total_calls:.0f} %"] for i, (k, c) in enumerate(zip(keys, calls, strict=True))]


@dataclass(frozen=True)
class Costs:
    """Per-call and per-process figures measured in the simulation."""

    cpu_per_call: float
    """Redis CPU seconds per extra round trip: (steady - idle CPU) / (steady - idle calls)."""
    cpu_base: float
    """Redis CPU seconds per second that no call explains (its cron): idle CPU less its calls."""
    background: float
    """Round trips per guard process per second besides the health exchange and leases."""
    health: float
    """Health exchanges per cluster replica per second."""
    lease: float
    """Lease calls per guard process per second under steady load."""
    packing: int
    """Clusters each simulated guard process fronted."""

    @staticmethod
    def measured(results: Results) -> Costs:
        idle, steady = results.phases[0], results.phases[1]
        shape = results.shape
        idle_rest = max(0.0, idle.redis.round_trips - idle.health_calls - idle.lease_calls)
        extra_calls = steady.redis.round_trips / steady.seconds - idle.redis.round_trips / idle.seconds
        extra_cpu = steady.redis.cpu / steady.seconds - idle.redis.cpu / idle.seconds
        per_call = ratio(extra_cpu, extra_calls) if extra_calls > 0 and extra_cpu > 0 else ratio(
            steady.redis.cpu, steady.redis.round_trips)
        base = max(0.0, idle.redis.cpu / idle.seconds - per_call * idle.redis.round_trips / idle.seconds)
        return Costs(cpu_per_call=per_call, cpu_base=base,
                     background=idle_rest / results.processes / idle.seconds,
                     health=idle.health_calls / (shape.clusters * shape.replicas) / idle.seconds,
                     lease=steady.lease_calls / results.processes / steady.seconds,
                     packing=math.ceil(shape.clusters / shape.groups))

    def core(self, calls: float) -> float:
        """Share of one Redis core `calls` round trips per second take."""
        return self.cpu_base + calls * self.cpu_per_call


def projection_rows(costs: Costs) -> list[list[str]]:
    rows = []
    for clusters, rate in ((100, 100_000), (1000, 100_000), (1000, 1_000_000)):
        for packing in sorted({1, costs.packing}):
            processes = math.ceil(clusters / packing) * 3
            other = processes * costs.background + clusters * 3 * costs.health
            lease = processes * costs.lease
            ceiling = processes / TICK
            rows.append([f"{clusters} x 3", f"{packing}", f"{processes:,}", f"{rate:,}", f"{lease:,.0f}",
                         f"{other:,.0f}", f"{lease / rate:.3f}", f"{(lease + other) / rate:.3f}",
                         f"{100 * costs.core(lease + other):.1f} %", f"{100 * costs.core(ceiling + other):.1f} %"])
    return rows


PROJECTION_HEADER = ["fleet", "clusters per process", "guard processes", "requests/s", "lease calls/s",
                     "other calls/s", "lease calls per request", "Redis calls per request",
                     "one Redis core", "at the lease ceiling"]


def render(results: Results) -> str:
    parts = ["", "Redis cost (single redis-server):", table(COST_HEADER, cost_rows(results.phases))]
    if results.faults and len(results.phases) > 1:
        baseline = results.phases[1] if len(results.phases) > 1 else results.phases[0]
        parts += ["", "Admitted requests while Redis is slow or gone (fault proxy between guard and Redis):",
                  table(["Redis", "admitted", "failed", "p50 ms", "p99 ms", "p99 / Redis up"],
                        fault_rows(baseline, results.faults))]
    if results.propagation:
        parts += ["", "In force on every replica (from the change: pub/sub message seen, or the api-server gone):",
                  table(["change", "replicas", "first ms", "last ms"], propagation_rows(results.propagation))]
    if results.cluster is not None:
        parts += ["", "Redis Cluster (3 masters), steady load:", table(COST_HEADER, cost_rows([results.cluster])),
                  table(["node", "keys", "share", "calls/s", "share"], spread_rows(results.cluster))]
    elif results.cluster_note:
        parts += ["", results.cluster_note]
    if len(results.phases) > 1 and results.phases[0].steady.admitted == 0:
        costs = Costs.measured(results)
        parts += ["", f"Measured: {1e6 * costs.cpu_per_call:.1f} us of Redis CPU per call, "
                      f"{1000 * costs.cpu_base:.1f} ms/s without calls; per guard process "
                      f"{costs.background:.1f} calls/s besides health ({costs.health:.2f}/s per cluster replica) "
                      f"and {costs.lease:.1f} lease calls/s under steady load (ceiling {1 / TICK:.0f}/s).",
                  "Projection:", table(PROJECTION_HEADER, projection_rows(costs))]
    return "\n".join(parts)
