"""The fleet simulation's processes: Redis (one server or a 3-master Redis Cluster), the canned
upstream, and guard processes each fronting a share of the clusters, with their settings, the
tenants' policies and the bundle signing key.

Cluster `c` is fronted by process group `c % groups`; each group runs `replicas` guard processes
with the same settings, so `clusters` x `replicas` cluster replicas run in `groups` x `replicas`
processes. Every process is started by `chaos.processes.Processes` and stopped with it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from chaos.fleet_upstream import token_of
from chaos.ports import free_port, free_ports
from chaos.processes import Proc, Processes, start_guard, wait_for_line

GUARD = [sys.executable, "-m", "guard.cli"]
RUNAWAY = "runaway"
EVERYONE = "everyone"
"""A tenant whose one user is spread over every cluster: one key per guard process."""
RUNAWAY_QUOTA = 20
QUARANTINE = "  quarantine: {threshold: 40, window: 10s, ttl: 60s}\n"
POLICY = """apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {{name: {name}}}
spec:
  subjects: [{{kind: Group, name: {name}}}]
{extra}  rules:
    - name: all
      quota: {{rate: {rate}/s, burst: {burst}, scope: tenant, maxWait: 0s}}
"""


@dataclass(frozen=True)
class Shape:
    """The fleet's size and load."""

    clusters: int = 100
    groups: int = 3
    replicas: int = 3
    tenants: int = 20
    rate: float = 900.0
    """Steady requests/s offered over every cluster and replica, each tenant well under its quota."""
    runaway_rate: float = 200.0
    headroom: float = 3.0
    """Each tenant's quota is `headroom` times what it is offered."""
    tick: str = ""
    lease_ttl: str = ""
    """guard's `redis.tick` and `redis.leaseTTL` (empty: guard's defaults, 40ms and 250ms)."""

    def cluster(self, c: int) -> str:
        return f"c{c:03d}"

    def tenant(self, c: int) -> str:
        return f"tenant-{c % self.tenants:02d}"

    def tenant_quota(self) -> int:
        return max(1, round(self.headroom * self.rate / self.tenants))

    def clusters_of(self, group: int) -> list[int]:
        return [c for c in range(self.clusters) if c % self.groups == group]


@dataclass
class Guard:
    """One guard process: its group, the clusters it fronts, its ports."""

    group: int
    replica: int
    port: int
    admin_port: int
    proc: Proc | None = None

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


@dataclass
class Bed:
    """Everything one fleet run started."""

    shape: Shape
    workdir: Path
    procs: Processes
    redis_ports: list[int]
    cluster_mode: bool
    upstream_port: int = 0
    guards: list[Guard] = field(default_factory=list)
    servers: dict[str, int] = field(default_factory=dict)
    """Cluster name -> the port its api-server is reached on (the upstream, or a fault proxy)."""

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_ports[0]}/0"

    def replicas_of(self, cluster: int) -> list[Guard]:
        group = cluster % self.shape.groups
        return [g for g in self.guards if g.group == group]

    def push(self, policies: Path) -> subprocess.CompletedProcess[str]:
        """`guard policy push` of `policies`, signed with the fleet's key."""
        return subprocess.run([*GUARD, "policy", "push", str(policies), "--redis", self.redis_url,
                               "--signing-key", str(self.workdir / "fleet.key"),
                               "--public-key", str(self.workdir / "fleet.pub")],
                              capture_output=True, text=True, timeout=60)


def shed(bed: Bed, cluster: str, tenant: str) -> subprocess.CompletedProcess[str]:
    """`guard fleet shed`: every replica of `cluster` refuses `tenant` for 10 s."""
    return subprocess.run([*GUARD, "fleet", "shed", "--cluster", cluster, "--tenant", tenant, "--for", "10s",
                           "--reason", "fleet simulation", "--redis", bed.redis_url,
                           "--signing-key", str(bed.workdir / "fleet.key"),
                           "--public-key", str(bed.workdir / "fleet.pub")],
                          capture_output=True, text=True, timeout=60)


def write_policies(directory: Path, shape: Shape, *, quota: int | None = None) -> Path:
    """One policy per tenant (quota `headroom` x its offered load, or `quota`) and the runaway's
    tenant (a small quota, quarantine on)."""
    directory.mkdir(parents=True, exist_ok=True)
    rate = quota or shape.tenant_quota()
    for k in range(shape.tenants):
        name = f"tenant-{k:02d}"
        (directory / f"{name}.yaml").write_text(POLICY.format(name=name, rate=rate, burst=rate, extra=""))
    whole = max(1, round(shape.headroom * shape.rate))
    (directory / f"{EVERYONE}.yaml").write_text(
        POLICY.format(name=EVERYONE, rate=whole, burst=whole, extra=""))
    (directory / f"{RUNAWAY}.yaml").write_text(
        POLICY.format(name=RUNAWAY, rate=RUNAWAY_QUOTA, burst=RUNAWAY_QUOTA, extra=QUARANTINE))
    return directory


def guard_config(bed: Bed, guard: Guard, redis: str) -> str:
    lines = [f"listen: 127.0.0.1:{guard.port}", f"admin: 127.0.0.1:{guard.admin_port}", "clusters:"]
    for c in bed.shape.clusters_of(guard.group):
        name = bed.shape.cluster(c)
        port = bed.servers.get(name, bed.upstream_port)
        lines += [f"  - name: {name}", f"    server: http://127.0.0.1:{port}",
                  "    token: fleet-guard-credential", "    health: {failures: 3, coolDown: 5s}"]
    lines += ["forwarding: passthrough", f"policies: {bed.workdir / 'policies'}",
              "accessLog: {enabled: false}", "admission: {idSecret: fleet-simulation-id-secret}",
              "identity: {reviewBudget: {perClient: {rate: 1000/s, burst: 1000}, "
              "overall: {rate: 1000/s, burst: 1000}}}",
              f"redis: {{url: '{redis}', cluster: {'true' if bed.cluster_mode else 'false'}, "
              + (f"tick: {bed.shape.tick}, " if bed.shape.tick else "")
              + (f"leaseTTL: {bed.shape.lease_ttl}, " if bed.shape.lease_ttl else "") +
              f"publicKey: {bed.workdir / 'fleet.pub'}, "
              f"expectedReplicas: {bed.shape.groups * bed.shape.replicas}}}"]
    return "\n".join(lines) + "\n"


async def start_redis(procs: Processes, workdir: Path, *, cluster: bool) -> list[int]:
    """One redis-server, or three joined into a Redis Cluster; their ports."""
    count = 3 if cluster else 1
    ports = []
    for i in range(count):
        port = free_ports(2, step=10000) if cluster else free_port()
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(workdir)]
        if cluster:
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
        proc = procs.spawn(f"redis-{i}" if cluster else "redis", argv)
        await wait_for_line(proc, "Ready to accept connections")
        ports.append(port)
    if cluster:
        addresses = [f"127.0.0.1:{p}" for p in ports]
        done = subprocess.run(["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0",
                               "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-300:]}{done.stderr[-300:]}")
        await wait_cluster_ok(ports)
    return ports


async def wait_cluster_ok(ports: list[int]) -> None:
    for _ in range(250):
        states = [subprocess.run(["redis-cli", "-p", str(p), "CLUSTER", "INFO"], capture_output=True,
                                 text=True, timeout=10).stdout for p in ports]
        if all("cluster_state:ok" in s for s in states):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")


async def start_upstream(procs: Processes) -> int:
    port = free_port()
    proc = procs.spawn("upstream", [sys.executable, "-m", "chaos.fleet_upstream", "--port", str(port)])
    await wait_for_line(proc, "listening")
    return port


def keygen(workdir: Path) -> None:
    """The fleet's bundle signing key pair (kept when a reused work directory has one)."""
    if (workdir / "fleet.key").exists() and (workdir / "fleet.pub").exists():
        return
    done = subprocess.run([*GUARD, "policy", "keygen", str(workdir / "fleet")], capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"guard policy keygen failed: {done.stderr.strip()}")


async def start_guards(bed: Bed, redis: str) -> None:
    """Write every guard process's settings and start them all (a few at a time: 2 cores)."""
    shape = bed.shape
    for group in range(shape.groups):
        for replica in range(shape.replicas):
            bed.guards.append(Guard(group, replica, free_port(), free_port()))
    for guard in bed.guards:
        path = bed.workdir / f"guard-{guard.group}-{guard.replica}.yaml"
        path.write_text(guard_config(bed, guard, redis))
    for at in range(0, len(bed.guards), 3):
        batch = bed.guards[at:at + 3]
        started = await asyncio.gather(*(
            start_guard(bed.procs, f"guard-{g.group}-{g.replica}",
                        bed.workdir / f"guard-{g.group}-{g.replica}.yaml", g.port, g.admin_port)
            for g in batch))
        for guard, proc in zip(batch, started, strict=True):
            guard.proc = proc


def steady_token(shape: Shape, c: int) -> str:
    """The steady load on cluster `c`: one of two users of the cluster's tenant."""
    tenant = shape.tenant(c)
    return token_of(f"{tenant}-u{(c // shape.tenants) % 2}", tenant)


def everyone_token() -> str:
    return token_of(f"{EVERYONE}-u", EVERYONE)


def runaway_token() -> str:
    return token_of(f"{RUNAWAY}-job", RUNAWAY)
