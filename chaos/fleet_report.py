"""The fleet simulation's tables: Redis cost per phase, failure domains, propagation, the Redis
Cluster's spread, and the projection from the measured per-call costs to larger fleets.

The projection (`project`) prices Redis's CPU three ways, each measured: per call of the idle fleet
(heartbeats, quarantine and bundle polls per guard process, one health exchange per cluster replica
per heartbeat), and per lease call plus per key a lease call carries (fitted from two loads with
many keys and with one key per call). It counts calls for a fleet of `clusters` x 3 replicas with
`packing` clusters per guard process (1: one process per replica, as most deployments run), one
tenant per cluster as in the simulation, each key re-leasing at most 2/leaseTTL times a second and
each process making at most one lease call per tick. Its first row applies the model to the
simulation itself, to compare with what was measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chaos.fleet_measure import ROUNDS

if TYPE_CHECKING:
    from chaos.fleet import Phase, Results



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


def fault_rows(pairs: list[tuple[Phase, Phase]]) -> list[list[str]]:
    rows = []
    for up, fault in pairs:
        t = fault.steady
        rows.append([fault.name, f"{t.admitted}", f"{t.statuses[429]}", f"{t.failed}",
                     f"{1000 * up.steady.p99():.1f}", f"{1000 * t.p50():.1f}", f"{1000 * t.p99():.1f}",
                     f"{ratio(t.p99(), up.steady.p99()):.2f}"])
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


def lease_prices(idle: Phase, loads: list[Phase]) -> tuple[float, float, str]:
    """(Redis CPU seconds per lease call, per key a call carries, how they were found): the CPU
    the load added over the idle fleet is a x calls + b x keys; two loads with different keys per
    call (many tenants, one tenant) give a and b. When one comes out negative (the other explains
    it all, within the noise) it is 0 and the other is fitted alone by least squares."""
    added = [(max(0.0, p.redis.cpu / p.seconds - idle.redis.cpu / idle.seconds),
              p.lease_calls / p.seconds, p.leased_keys / p.seconds) for p in loads]
    calls_alone = ratio(sum(d * c for d, c, _ in added), sum(c * c for _, c, _ in added))
    keys_alone = ratio(sum(d * k for d, _, k in added), sum(k * k for _, _, k in added))
    if len(added) >= 2:
        (d1, c1, k1), (d2, c2, k2) = added[:2]
        det = c1 * k2 - c2 * k1
        if abs(det) > 1e-9:
            a, b = (d1 * k2 - d2 * k1) / det, (c1 * d2 - c2 * d1) / det
            if a > 0 and b > 0:
                return a, b, "fitted"
            if a <= 0:
                return 0.0, keys_alone, "fitted; the calls add nothing beyond their keys"
            return calls_alone, 0.0, "fitted; the keys add nothing beyond their calls"
    return calls_alone, 0.0, "from one load: a call's price, whatever keys it carries"


@dataclass(frozen=True)
class Costs:
    """What the simulation measured, per unit the projection scales by."""

    fixed_call: float
    """Redis CPU seconds per call of the idle fleet (heartbeats, health, polls; cron included)."""
    background: float
    """Calls per guard process per second besides the health exchange and leases."""
    health: float
    """Health exchanges per cluster replica per second."""
    per_call: float
    per_key: float
    fitted: str
    tick: float
    lease_ttl: float

    @staticmethod
    def measured(results: Results) -> Costs:
        idle = results.phases[0]
        loads = [p for p in results.phases[1:] if p.name.startswith("steady") and not p.runaway.statuses]
        shape = results.shape
        rest = max(0.0, idle.redis.round_trips - idle.health_calls - idle.lease_calls)
        per_call, per_key, fitted = lease_prices(idle, loads)
        return Costs(fixed_call=ratio(idle.redis.cpu, idle.redis.round_trips),
                     background=rest / results.processes / idle.seconds,
                     health=idle.health_calls / (shape.clusters * shape.replicas) / idle.seconds,
                     per_call=per_call, per_key=per_key, fitted=fitted,
                     tick=parse_seconds(shape.tick, 0.040), lease_ttl=parse_seconds(shape.lease_ttl, 0.250))


def parse_seconds(text: str, default: float) -> float:
    if not text:
        return default
    return float(text[:-2]) / 1000 if text.endswith("ms") else float(text.rstrip("s"))


@dataclass(frozen=True)
class Fleet:
    """A fleet to project to: `clusters` x `replicas`, `packing` clusters per guard process, one
    tenant per cluster and a tenant on every `spread` clusters, each tenant's quota and burst
    `headroom` times its load (as in the simulation)."""

    clusters: int
    rate: float
    packing: int
    spread: float
    replicas: int = 3
    headroom: float = 3.0

    @property
    def processes(self) -> int:
        return math.ceil(self.clusters / self.packing) * self.replicas

    @property
    def tenants(self) -> float:
        return max(1.0, self.clusters / self.spread)

    @property
    def keys(self) -> float:
        """Tenants (bucket keys) one process uses."""
        return min(self.packing, self.tenants)


@dataclass(frozen=True)
class Projected:
    lease_calls: float
    leased_keys: float
    other_calls: float
    cpu: float
    lease_size: float


def project(costs: Costs, fleet: Fleet) -> Projected:
    """As guard sizes leases (guard.federation.lease_state): a lease covers a leaseTTL of the key's
    demand on this process, at most burst/2N tokens with N the live replicas of the whole fleet, at
    least 1, and is topped up when half is spent; so a key re-leases demand / max(1, size/2) times a
    second, at most once per tick, and one call per tick carries every key of a process wanting
    tokens (counted as no batching below that: an upper bound)."""
    demand = fleet.rate / (fleet.processes * fleet.keys)
    burst = fleet.headroom * fleet.rate / fleet.tenants
    size = min(max(1.0, demand * costs.lease_ttl), max(1.0, burst / (2 * fleet.processes)))
    per_key = min(demand / max(1.0, size / 2), 1 / costs.tick)
    keys = fleet.processes * fleet.keys * per_key
    calls = min(keys, fleet.processes / costs.tick)
    other = fleet.processes * costs.background + fleet.clusters * fleet.replicas * costs.health
    cpu = other * costs.fixed_call + calls * costs.per_call + keys * costs.per_key
    return Projected(calls, keys, other, cpu, size)


def projection_row(costs: Costs, fleet: Fleet) -> list[str]:
    p = project(costs, fleet)
    return [f"{fleet.clusters} x {fleet.replicas}", f"{fleet.packing}", f"{fleet.processes:,}",
            f"{fleet.rate:,.0f}", f"{p.lease_size:,.1f}", f"{p.lease_calls:,.0f}", f"{p.leased_keys:,.0f}",
            f"{p.other_calls:,.0f}",
            f"{p.lease_calls / fleet.rate:.3f}", f"{(p.lease_calls + p.other_calls) / fleet.rate:.3f}",
            f"{100 * p.cpu:.1f} %"]


def projection_rows(costs: Costs, results: Results) -> list[list[str]]:
    shape = results.shape
    packing = math.ceil(shape.clusters / shape.groups)
    spread = shape.clusters / shape.tenants
    rows = [projection_row(costs, Fleet(shape.clusters, shape.rate, packing, spread, shape.replicas,
                                        shape.headroom))]
    rows += [projection_row(costs, Fleet(clusters, rate, pack, spread, 3, shape.headroom))
             for clusters, rate in ((100, 100_000), (1000, 100_000), (1000, 1_000_000))
             for pack in sorted({1, packing})]
    return rows


PROJECTION_HEADER = ["fleet", "clusters per process", "guard processes", "requests/s", "lease size",
                     "lease calls/s",
                     "keys leased/s", "other calls/s", "lease calls per request", "Redis calls per request",
                     "one Redis core"]


def render(results: Results) -> str:
    parts = ["", "Redis cost (single redis-server):", table(COST_HEADER, cost_rows(results.phases))]
    if results.faults:
        parts += ["", "Steady requests while Redis is slow or gone (fault proxy between guard and Redis;",
                  "each fault after the same span with Redis up):",
                  table(["Redis", "admitted", "429", "failed", "p99 ms, Redis up", "p50 ms", "p99 ms",
                         "p99 / Redis up"], fault_rows(results.faults))]
    if results.propagation:
        rounds = sorted(ROUNDS) or [0.0]
        parts += ["", "In force on every replica (from the change: its pub/sub message, or the api-server",
                  f"stopping to answer; /metrics polled, a round took "
                  f"{1000 * rounds[len(rounds) // 2]:.0f} ms "
                  f"(median), {1000 * rounds[-1]:.0f} ms at most):",
                  table(["change", "replicas", "first ms", "last ms"], propagation_rows(results.propagation))]
    if results.cluster is not None:
        parts += ["", "Redis Cluster (3 masters), steady load:",
                  table(COST_HEADER, cost_rows([results.cluster])),
                  table(["node", "keys", "share", "calls/s", "share"], spread_rows(results.cluster))]
    elif results.cluster_note:
        parts += ["", results.cluster_note]
    if len(results.phases) > 1 and results.phases[0].steady.admitted == 0:
        costs = Costs.measured(results)
        how = costs.fitted
        steady = results.phases[1]
        parts += ["", f"Measured: {1e6 * costs.fixed_call:.0f} us of Redis CPU per call of the idle fleet; "
                      f"{costs.background:.1f} calls/s per guard process besides health "
                      f"({costs.health:.2f}/s per cluster replica) and leases;",
                  f"a lease call costs {1e6 * costs.per_call:.0f} us plus "
                  f"{1e6 * costs.per_key:.0f} us per key "
                  f"it carries ({how}); the steady load made {steady.lease_calls / steady.seconds:.0f} "
                  f"lease calls/s carrying {steady.leased_keys / steady.seconds:.0f} keys/s.",
                  "Projection (first row: the model applied to the simulation itself):",
                  table(PROJECTION_HEADER, projection_rows(costs, results))]
    return "\n".join(parts)
