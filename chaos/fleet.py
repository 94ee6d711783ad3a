"""`python -m chaos fleet`: many simulated clusters behind a fleet of guard processes sharing Redis,
steady load under quota plus one runaway, and what it costs Redis.

One run on a single redis-server measures: Redis CPU and calls with the fleet idle, under steady
load and with a runaway; how long a quarantine, a bundle push and a circuit opening take to be in
force on every replica; and the p99 of admitted requests while the fault proxy between the guards
and Redis adds 50 ms or 500 ms or drops every connection. A second run on a 3-master Redis Cluster
measures the steady load again and how the keys and calls spread over the masters. It prints one
table per subject and a projection to larger fleets (chaos.fleet_report). Every process it starts
is stopped at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from chaos import fleet_report
from chaos.faults import FaultProxy
from chaos.fleet_bed import (
    Bed,
    Shape,
    everyone_token,
    keygen,
    runaway_token,
    shed,
    start_guards,
    start_redis,
    start_upstream,
    steady_token,
    write_policies,
)
from chaos.fleet_load import Load, Pool, Tally, Target
from chaos.fleet_measure import Published, RedisDelta, RedisWatch, Scraper, until_everywhere
from chaos.processes import Processes

CIRCUIT_CLUSTER = 1
"""The cluster whose api-server stops answering when the circuit opening is timed."""
SHED_CLUSTER = 2
"""The cluster a shed order is timed on (it refuses that cluster's tenant for 10 s)."""


@dataclass
class Phase:
    """One measured span: what Redis did, what the guards counted, what the clients got."""

    name: str
    seconds: float
    redis: RedisDelta
    lease_calls: float
    leased_keys: float
    health_calls: float
    steady: Tally
    runaway: Tally = field(default_factory=Tally)

    @property
    def admitted(self) -> int:
        return self.steady.admitted + self.runaway.admitted


@dataclass
class Results:
    shape: Shape
    processes: int
    phases: list[Phase] = field(default_factory=list)
    faults: list[tuple[Phase, Phase]] = field(default_factory=list)
    """(Redis answering at once, Redis at fault) measured back to back: the machine is shared, so a
    fault's latency is compared with the span just before it."""
    propagation: dict[str, list[float]] = field(default_factory=dict)
    """Event name -> seconds from the change to its being in force on each replica."""
    cluster: Phase | None = None
    cluster_note: str = ""


def guard_pools(bed: Bed, size: int) -> dict[int, Pool]:
    return {g.port: Pool(g.port, size) for g in bed.guards}


def steady_targets(bed: Bed) -> list[Target]:
    shape = bed.shape
    return [Target(g.port, shape.cluster(c), steady_token(shape, c))
            for c in range(shape.clusters) for g in bed.replicas_of(c)]


def one_tenant_targets(bed: Bed) -> list[Target]:
    """The steady load's clusters and replicas, all as one user of one tenant."""
    return [Target(t.port, t.cluster, everyone_token()) for t in steady_targets(bed)]


def runaway_targets(bed: Bed) -> list[Target]:
    first = bed.replicas_of(0)[0]
    return [Target(first.port, bed.shape.cluster(0), runaway_token())]


async def measure(name: str, seconds: float, watch: RedisWatch, scraper: Scraper, steady: Load | None,
                  runaway: Load | None = None) -> Phase:
    """Counters before and after `seconds` of whatever load is running now."""
    before, pages = watch.snapshot(), await scraper.all()
    if steady is not None:
        steady.reset()
    if runaway is not None:
        runaway.reset()
    await asyncio.sleep(seconds)
    steady_tally = steady.reset() if steady is not None else Tally()
    runaway_tally = runaway.reset() if runaway is not None else Tally()
    after, pages_after = watch.snapshot(), await scraper.all()

    def total(metric: str) -> float:
        return sum(p.get(metric, 0.0) for p in pages_after) - sum(p.get(metric, 0.0) for p in pages)

    return Phase(name, seconds, RedisWatch.delta(before, after), total("guard_federation_lease_calls_total"),
                 total("guard_federation_leased_keys_total"), total("guard_federation_health_calls_total"),
                 steady_tally, runaway_tally)


@asynccontextmanager
async def fleet(shape: Shape, workdir: Path, *, cluster_mode: bool) -> AsyncIterator[tuple[Bed, FaultProxy,
                                                                                           FaultProxy]]:
    """Redis (behind a fault proxy), the upstream (one cluster's behind another), the guards."""
    workdir.mkdir(parents=True, exist_ok=True)
    with Processes(workdir) as procs:
        ports = await start_redis(procs, workdir, cluster=cluster_mode)
        bed = Bed(shape, workdir, procs, ports, cluster_mode)
        bed.upstream_port = await start_upstream(procs)
        redis_proxy = FaultProxy(target=("127.0.0.1", ports[0]))
        api_proxy = FaultProxy(target=("127.0.0.1", bed.upstream_port))
        await redis_proxy.start()
        await api_proxy.start()
        try:
            bed.servers[shape.cluster(CIRCUIT_CLUSTER)] = api_proxy.port
            keygen(workdir)
            write_policies(workdir / "policies", shape)
            # A Redis Cluster client must reach every master itself: no proxy in front of it.
            redis = bed.redis_url if cluster_mode else f"redis://127.0.0.1:{redis_proxy.port}/0"
            await start_guards(bed, redis)
            yield bed, redis_proxy, api_proxy
        finally:
            await redis_proxy.stop()
            await api_proxy.stop()
            await asyncio.sleep(0.2)  # let the proxies' links end before the guards are stopped


async def wait_live(scraper: Scraper, count: int) -> None:
    for _ in range(300):
        pages = await scraper.all()
        if all(p.get("guard_federation_live_replicas", 0) >= count for p in pages):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the guards did not all see {count} live replicas")


async def sample_flag(scraper: Scraper, admin: str, prefix: str, wanted: float, label: str = "") -> bool:
    page = await scraper.one(admin)
    return any(name.startswith(prefix) and label in name and value == wanted for name, value in page.items())


async def time_quarantine(scraper: Scraper, published: Published, admins: list[str]) -> list[float]:
    """Seconds from the quarantine's publication to each replica counting it active (negative: the
    replica the runaway floods quarantines on its own count before it publishes)."""
    seen = await until_everywhere(admins, lambda a: sample_flag(scraper, a, "guard_quarantine_active", 1.0),
                                  timeout=60.0)
    start = published.at("quarantine")
    return [t - start if start is not None else math.inf for t in seen]


async def time_bundle(bed: Bed, scraper: Scraper, published: Published, admins: list[str]) -> list[float]:
    """Seconds from a pushed bundle's publication to each replica running it."""
    pushed = bed.workdir / "pushed"
    shutil.copytree(bed.workdir / "policies", pushed, dirs_exist_ok=True)
    done = await asyncio.to_thread(bed.push, pushed)
    if done.returncode != 0:
        raise RuntimeError(f"guard policy push failed: {done.stderr.strip()}")
    seen = await until_everywhere(admins, lambda a: sample_flag(scraper, a, "guard_bundles_version", 1.0))
    start = published.at("bundles")
    return [t - start if start is not None else math.inf for t in seen]


async def time_shed(bed: Bed, scraper: Scraper, published: Published) -> list[float]:
    """Seconds from a shed order's publication to each replica of its cluster holding it."""
    admins = [g.admin for g in bed.replicas_of(SHED_CLUSTER)]
    cluster, tenant = bed.shape.cluster(SHED_CLUSTER), bed.shape.tenant(SHED_CLUSTER)
    done = await asyncio.to_thread(shed, bed, cluster, tenant)
    if done.returncode != 0:
        raise RuntimeError(f"guard fleet shed failed: {done.stderr.strip()}")
    seen = await until_everywhere(admins, lambda a: sample_flag(scraper, a, "guard_shed_orders", 1.0))
    start = published.at("shed")
    return [t - start if start is not None else math.inf for t in seen]


async def time_circuit(bed: Bed, scraper: Scraper, api_proxy: FaultProxy) -> list[float]:
    """Seconds from one cluster's api-server refusing connections to each of its replicas' circuits
    being open (the steady load keeps sending there)."""
    admins = [g.admin for g in bed.replicas_of(CIRCUIT_CLUSTER)]
    label = f'cluster="{bed.shape.cluster(CIRCUIT_CLUSTER)}"'
    start = time.monotonic()
    await api_proxy.refuse()
    api_proxy.reset()
    seen = await until_everywhere(
        admins, lambda a: sample_flag(scraper, a, "guard_upstream_endpoint_up{", 0.0, label))
    await api_proxy.restore()
    return [t - start for t in seen]


FAULTS = [("Redis +50 ms", {"latency": 0.05}), ("Redis +500 ms", {"latency": 0.5}),
          ("Redis drops connections", {"drop": 1.0})]


async def fault_phases(proxy: FaultProxy, watch: RedisWatch, scraper: Scraper, steady: Load,
                       seconds: float, faults: list[tuple[str, dict[str, float]]] = FAULTS,
                       ) -> list[tuple[Phase, Phase]]:
    pairs = []
    for name, settings in faults:
        up = await measure("Redis up, just before", seconds, watch, scraper, steady)
        for attribute, value in settings.items():
            setattr(proxy, attribute, value)
        if settings.get("drop"):
            proxy.reset()
        pairs.append((up, await measure(name, seconds, watch, scraper, steady)))
        await proxy.restore()
        await asyncio.sleep(2.0)  # the breakers' probes find Redis again
    return pairs


async def single_redis_run(shape: Shape, workdir: Path, phase: float, results: Results) -> None:
    async with fleet(shape, workdir, cluster_mode=False) as (bed, redis_proxy, api_proxy), \
            Scraper([g.admin for g in bed.guards]) as scraper:
        watch = RedisWatch(bed.redis_ports)
        published = Published(bed.redis_ports[0])
        await published.start()
        pools = guard_pools(bed, 8)
        try:
            await wait_live(scraper, len(bed.guards))
            results.phases.append(await measure("idle (no requests)", min(phase, 10.0), watch, scraper, None))
            steady = Load(pools, steady_targets(bed), shape.rate)
            steady.start()
            await asyncio.sleep(5.0)  # warm-up: token reviews, first leases
            results.phases.append(await measure("steady, under quota", phase, watch, scraper, steady))
            admins = [g.admin for g in bed.guards]
            quarantine = asyncio.get_running_loop().create_task(time_quarantine(scraper, published, admins))
            runaway = Load(pools, runaway_targets(bed), shape.runaway_rate)
            runaway.start()
            results.phases.append(
                await measure("steady + one runaway", phase, watch, scraper, steady, runaway))
            await runaway.stop()
            results.propagation["quarantine"] = await quarantine
            await steady.stop()
            steady = await one_tenant_phase(bed, pools, watch, scraper, phase, results)
            results.faults = await fault_phases(redis_proxy, watch, scraper, steady, phase / 2)
            results.propagation["bundle push"] = await time_bundle(bed, scraper, published, admins)
            results.propagation["shed order"] = await time_shed(bed, scraper, published)
            results.propagation["circuit opening"] = await time_circuit(bed, scraper, api_proxy)
            await steady.stop()
        finally:
            await published.close()
            for pool in pools.values():
                pool.close()


async def one_tenant_phase(bed: Bed, pools: dict[int, Pool], watch: RedisWatch, scraper: Scraper,
                           phase: float, results: Results) -> Load:
    """The same load as one tenant: one key per guard process, so each lease call carries one key
    (the projection tells the cost of a call from the cost of a key with it). Returns the steady
    load, started again."""
    shape = bed.shape
    one = Load(pools, one_tenant_targets(bed), shape.rate)
    one.start()
    await asyncio.sleep(3.0)
    results.phases.append(await measure("steady, one tenant everywhere", phase, watch, scraper, one))
    await one.stop()
    steady = Load(pools, steady_targets(bed), shape.rate)
    steady.start()
    await asyncio.sleep(3.0)
    return steady


async def cluster_run(shape: Shape, workdir: Path, phase: float, results: Results) -> None:
    try:
        context = fleet(shape, workdir, cluster_mode=True)
        bed, _, _ = await context.__aenter__()
    except (RuntimeError, OSError) as e:
        results.cluster_note = f"Redis Cluster run skipped: {e}"
        return
    try:
        async with Scraper([g.admin for g in bed.guards]) as scraper:
            watch = RedisWatch(bed.redis_ports)
            pools = guard_pools(bed, 8)
            await wait_live(scraper, len(bed.guards))
            steady = Load(pools, steady_targets(bed), shape.rate)
            steady.start()
            await asyncio.sleep(5.0)
            results.cluster = await measure("steady, Redis Cluster (3 masters)", phase, watch, scraper,
                                            steady)
            await steady.stop()
            for pool in pools.values():
                pool.close()
    finally:
        await context.__aexit__(None, None, None)


async def simulate(shape: Shape, workdir: Path, *, phase: float, cluster: bool, events: bool) -> Results:
    results = Results(shape, shape.groups * shape.replicas)
    if events:
        await single_redis_run(shape, workdir / "single", phase, results)
    else:
        await steady_only(shape, workdir / "single", phase, results)
    if cluster:
        await cluster_run(shape, workdir / "cluster", phase, results)
    return results


async def steady_only(shape: Shape, workdir: Path, phase: float, results: Results) -> None:
    """The smallest run: steady load, then one phase with Redis answering 50 ms late."""
    async with fleet(shape, workdir, cluster_mode=False) as (bed, redis_proxy, _), \
            Scraper([g.admin for g in bed.guards]) as scraper:
        watch = RedisWatch(bed.redis_ports)
        pools = guard_pools(bed, 4)
        await wait_live(scraper, len(bed.guards))
        results.phases.append(await measure("idle (no requests)", min(phase, 5.0), watch, scraper, None))
        steady = Load(pools, steady_targets(bed), shape.rate)
        steady.start()
        await asyncio.sleep(1.0)
        results.phases.append(await measure("steady, under quota", phase, watch, scraper, steady))
        results.faults = await fault_phases(redis_proxy, watch, scraper, steady, phase, FAULTS[:1])
        await steady.stop()
        for pool in pools.values():
            pool.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clusters", type=int, default=100, help="simulated clusters (default 100)")
    parser.add_argument("--replicas", type=int, default=3, help="guard replicas of each cluster (default 3)")
    parser.add_argument("--groups", type=int, default=3,
                        help="guard process groups; each fronts clusters/groups clusters (default 3)")
    parser.add_argument("--tenants", type=int, default=20,
                        help="tenants spread over the clusters (default 20)")
    parser.add_argument("--rate", type=float, default=900.0,
                        help="steady requests/s over the fleet (default 900)")
    parser.add_argument("--runaway-rate", type=float, default=200.0,
                        help="the runaway's requests/s (default 200)")
    parser.add_argument("--phase", type=float, default=20.0, help="seconds per measured phase (default 20)")
    parser.add_argument("--no-cluster", action="store_true", help="skip the Redis Cluster run")
    parser.add_argument("--steady-only", action="store_true",
                        help="only the steady load, then Redis 50 ms late (no runaway, no timed changes)")
    parser.add_argument("--tick", default="", help="guard's redis.tick (default: guard's, 40ms)")
    parser.add_argument("--lease-ttl", default="", help="guard's redis.leaseTTL (default: guard's, 250ms)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep settings and logs here (default: temporary)")


def run(args: argparse.Namespace) -> int:
    shape = Shape(clusters=args.clusters, groups=args.groups, replicas=args.replicas, tenants=args.tenants,
                  rate=args.rate, runaway_rate=args.runaway_rate, tick=args.tick, lease_ttl=args.lease_ttl)
    if shape.clusters < 2 or shape.groups < 1 or shape.replicas < 1 or shape.groups > shape.clusters:
        print("python -m chaos fleet: need at least 2 clusters and 1 to --clusters groups", flush=True)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="guard-fleet-"))
    tuning = f" (redis tick {shape.tick or '40ms'}, leaseTTL {shape.lease_ttl or '250ms'})"
    print(f"fleet: {shape.clusters} clusters x {shape.replicas} replicas in {shape.groups * shape.replicas} "
          f"guard processes, {shape.tenants} tenants, {shape.rate:g} req/s steady{tuning}; logs in {workdir}",
          flush=True)
    results = asyncio.run(simulate(shape, workdir, phase=args.phase, cluster=not args.no_cluster,
                                   events=not args.steady_only))
    print(fleet_report.render(results))
    if args.workdir is None:
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)
    return 0
