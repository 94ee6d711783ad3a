"""Resource exhaustion: `guard serve` (TLS) in front of the simulator, one attack after another at
ten times the limit it presses on, while a well-behaved tenant keeps working.

Attacks (`ATTACKS`; add one there and it runs with the same assertions): half-open TLS handshakes
and idle connections at 10 x `limits.maxConnections`; bodies that never arrive and 8 MB LISTs never
read at 10 x the attacking rule's `maxInflight`. For each: the well-behaved tenant (bob, team-b, on
a keep-alive TLS connection pool) keeps at least 99 % success, guard never holds more than
maxConnections, it closes every attacking socket, and afterwards no priority-level seat and no
upstream request is left. Over all of them guard's resident memory stays under the memory limit of
manifests/base/deployment.yaml and comes back to within 20 MiB of its baseline. The test prints its
figures and asserts counts and bounds, never a time. `make test` runs it scaled down (maxConnections
100, maxInflight 2); `make harden` (GUARD_EXHAUSTION=full) at maxConnections 1,000, maxInflight 10.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import yaml

from guard.cli.certs import make_ca, make_server_cert, write_pair
from tests import attacks
from tests.conftest import TEAM_BOOTSTRAP, SimServer
from tests.proxy_fakes import GuardProcess
from tests.scrape import figures, rss_mib, trusting

pytestmark = pytest.mark.exhaustion
FULL = os.environ.get("GUARD_EXHAUSTION") == "full"
MANIFEST = Path(__file__).parents[2] / "manifests" / "base" / "deployment.yaml"


@dataclass(frozen=True)
class Scale:
    max_connections: int
    max_inflight: int


SCALE = Scale(1000, 10) if FULL else Scale(100, 2)
BATCH = 40 if FULL else 100
"""Connections opened every 50 ms: at full scale slower, or the listen backlog overflows and the
kernel retries the dropped handshakes for a minute and more before guard can see them."""
READ_ALL_PODS = """---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: team-a-reads-pods}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: team-a}]
"""
"""team-a (the attacker) may LIST every pod: 1,000 of 8 kB, the 8 MB answer its slow readers leave unread."""
LIMITS = (f"limits: {{maxConnections: {SCALE.max_connections}, handshakeTimeout: 2s, idleTimeout: 3s, "
          "bodyTimeout: 2s, writeTimeout: 2s}\n")


@dataclass(frozen=True)
class Target:
    """Where an attack aims: guard's address and the simulator's tokens."""

    host: str
    port: int
    tokens: dict[str, str]


@dataclass(frozen=True)
class Attack:
    name: str
    limit: Callable[[Scale], int]
    """The documented limit it presses on; it is run at ten times that."""
    run: Callable[[Target, int], Awaitable[list[socket.socket]]]
    """Open `count` attacking connections (or send requests) and return the sockets to watch."""
    closed_by_guard: bool = True
    """Whether guard must have closed every returned socket by the end of the attack."""


async def _half_open_tls(target: Target, count: int) -> list[socket.socket]:
    return await attacks.half_open_tls(target.host, target.port, count, batch=BATCH)


async def _idle(target: Target, count: int) -> list[socket.socket]:
    return await attacks.idle(target.host, target.port, count, batch=BATCH)


async def _slow_bodies(target: Target, count: int) -> list[socket.socket]:
    return await _tls(target, count, attacks.slow_body_request(
        "/api/v1/namespaces/team-a/configmaps", token=target.tokens["alice"]))


async def _slow_readers(target: Target, count: int) -> list[socket.socket]:
    token = target.tokens["alice"]
    request = f"GET /api/v1/pods HTTP/1.1\r\nHost: guard\r\nAuthorization: Bearer {token}\r\n\r\n"
    return await _tls(target, count, request.encode(), receive_buffer=4096)


ATTACKS = [
    Attack("half-open TLS", lambda s: s.max_connections, _half_open_tls),
    Attack("idle connections", lambda s: s.max_connections, _idle),
    Attack("slow bodies", lambda s: s.max_inflight, _slow_bodies),
    Attack("slow readers (8 MB LIST)", lambda s: s.max_inflight, _slow_readers),
]
"""The attacks, in order. The identity engineer adds garbage tokens and impersonation fan-out here."""


async def _tls(target: Target, count: int, request: bytes, *,
               receive_buffer: int | None = None) -> list[socket.socket]:
    """`count` TLS connections (blocking handshakes on a thread) that each send `request` and then
    nothing, and read nothing: the sockets, non-blocking."""
    def one() -> socket.socket:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        raw.settimeout(10)
        raw.connect((target.host, target.port))
        tls = _trusting_anything().wrap_socket(raw, server_hostname="127.0.0.1")
        tls.sendall(request)
        tls.setblocking(False)
        return tls

    return list(await asyncio.gather(*[asyncio.to_thread(one) for _ in range(count)]))


def _trusting_anything() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def _policy(name: str, max_inflight: int) -> str:
    return (f"apiVersion: guard.io/v1alpha1\nkind: TenantPolicy\nmetadata: {{name: {name}}}\nspec:\n"
            f"  subjects: [{{kind: Group, name: {name}}}]\n  rules:\n"
            f"    - {{name: all, quota: {{rate: 1000/s, burst: 1000}}, maxInflight: {max_inflight}}}\n")


@pytest.fixture
async def guard(tmp_path: Path,
                sim_server: Callable[..., SimServer]) -> AsyncIterator[tuple[GuardProcess, SimServer]]:
    (tmp_path / "bootstrap.yaml").write_text(TEAM_BOOTSTRAP + READ_ALL_PODS)
    sim = sim_server("--seed-objects", "1000", "--seed-object-bytes", "8192",
                     "--bootstrap", str(tmp_path / "bootstrap.yaml"))
    ca = make_ca()
    write_pair(tmp_path, "ca", ca)
    write_pair(tmp_path, "server", make_server_cert(ca))
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "team-a.yaml").write_text(_policy("team-a", SCALE.max_inflight))
    (policies / "team-b.yaml").write_text(_policy("team-b", 50))
    config = tmp_path / "guard.yaml"
    config.write_text(
        f"listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n"
        f"tls: {{cert: {tmp_path}/server.crt, key: {tmp_path}/server.key}}\n"
        f"clusters:\n  - name: sim\n    server: {sim.url}\n    token: {sim.tokens['admin']}\n"
        f"policies: {policies}\naccessLog: {{enabled: false}}\n{LIMITS}")
    process = await GuardProcess(config).start()
    yield process, sim
    await process.stop()


@dataclass
class Phase:
    name: str
    sockets: int
    ok: int = 0
    total: int = 0
    held: float = 0.0
    closed: int = 0
    rss_peak: float = 0.0
    guard_did: str = ""
    """What guard's connection counters say it did meanwhile."""


async def _well_behaved(url: str, ca: Path, token: str, stop: asyncio.Event, tally: Counter[str]) -> None:
    """bob reads team-b's configmaps about 20 times a second over a pool of 2 keep-alive TLS
    connections, as a controller would."""
    connector = aiohttp.TCPConnector(ssl=trusting(ca), limit=2)
    timeout = aiohttp.ClientTimeout(total=15)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        while not stop.is_set():
            try:
                async with session.get(url + "/api/v1/namespaces/team-b/configmaps") as answer:
                    await answer.read()
                    tally[str(answer.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as e:
                tally[type(e).__name__] += 1
            await asyncio.sleep(0.05)


async def _watch(guard: GuardProcess, phase: Phase, stop: asyncio.Event) -> None:
    """Sample guard's open connections and resident memory until `stop`."""
    assert guard.proc is not None
    while not stop.is_set():
        seen = await figures(guard.admin)
        phase.held = max(phase.held, seen["guard_connections_open"])
        phase.rss_peak = max(phase.rss_peak, rss_mib(guard.proc.pid))
        await asyncio.sleep(0.2)


async def _run(attack: Attack, guard: GuardProcess, target: Target,
               good: Callable[[Counter[str]], Awaitable[None]], stop: asyncio.Event) -> Phase:
    count = 10 * attack.limit(SCALE)
    phase, tally = Phase(attack.name, count), Counter[str]()
    before = await _connection_counts(guard)
    watching = asyncio.ensure_future(_watch(guard, phase, stop))
    client = asyncio.ensure_future(good(tally))
    socks = await attack.run(target, count)
    phase.sockets = len(socks)  # those that reached guard (a full SYN backlog drops a few at full scale)
    try:
        for _ in range(1800 if FULL else 600):  # until guard has closed every attacking socket
            await asyncio.sleep(0.1)
            phase.closed = attacks.closed_by_peer(socks)
            if phase.closed == len(socks) or not attack.closed_by_guard:
                break
        await asyncio.sleep(1.0)  # and a little more of the well-behaved tenant afterwards
    finally:
        stop.set()
        await asyncio.gather(client, watching)
        attacks.close_all(socks)
        stop.clear()
    phase.ok, phase.total = tally["200"], sum(tally.values())
    done = await _connection_counts(guard)
    phase.guard_did = ", ".join(f"{k} {done[k] - before[k]:.0f}" for k in done if done[k] > before[k])
    return phase


async def _connection_counts(guard: GuardProcess) -> dict[str, float]:
    return {k.removeprefix("guard_connections_").removesuffix("_total"): v
            for k, v in (await figures(guard.admin)).items()
            if k.startswith("guard_connections_") and k.endswith("_total")}


def _memory_limit_mib() -> float:
    """The guard container's memory limit in manifests/base/deployment.yaml, in MiB."""
    deployment = yaml.safe_load(MANIFEST.read_text())
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "guard"]
    limit = str(container["resources"]["limits"]["memory"])
    units = {"Mi": 1.0, "Gi": 1024.0, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    unit = next(u for u in units if limit.endswith(u))
    return float(limit.removesuffix(unit)) * units[unit]


async def _left(guard: GuardProcess) -> tuple[float, float]:
    """(seats in use over every priority level, requests at the api-server), once they settle."""
    seats = flights = -1.0
    for _ in range(100):
        seen = await figures(guard.admin)
        seats = sum(v for k, v in seen.items() if k.startswith("guard_admission_seats_in_use"))
        flights = sum(v for k, v in seen.items() if k.startswith("guard_requests_in_flight{"))
        if seats == flights == 0:
            break
        await asyncio.sleep(0.1)
    return seats, flights


async def test_attacks_at_ten_times_the_limits_leave_a_well_behaved_tenant_served(
        guard: tuple[GuardProcess, SimServer], tmp_path: Path) -> None:
    process, sim = guard
    assert process.proc is not None
    host, port = process.url.removeprefix("https://").rsplit(":", 1)
    target = Target(host, int(port), sim.tokens)
    stop = asyncio.Event()

    async def good(tally: Counter[str]) -> None:
        await _well_behaved(process.url, tmp_path / "ca.crt", sim.tokens["bob"], stop, tally)

    warm: Counter[str] = Counter()
    stop_warm = asyncio.get_running_loop().call_later(1.5, stop.set)
    await good(warm)
    stop_warm.cancel()
    stop.clear()
    baseline = rss_mib(process.proc.pid)
    phases, leftovers = [], []
    for attack in ATTACKS:
        phases.append(await _run(attack, process, target, good, stop))
        leftovers.append(await _left(process))
    after = await _settled_rss(process.proc.pid, baseline)
    limit = _memory_limit_mib()
    peak = max(p.rss_peak for p in phases)
    _print(phases, baseline, peak, after, limit, warm)

    assert warm["200"] == sum(warm.values()) > 0
    for phase, left in zip(phases, leftovers, strict=True):
        assert phase.total >= 20, phase  # the tenant really was served during the attack
        assert phase.ok >= 0.99 * phase.total, phase
        assert phase.held <= SCALE.max_connections, phase
        assert phase.closed == phase.sockets, phase
        assert left == (0, 0), (phase.name, left)
    assert peak < limit
    assert after - baseline <= 20


async def _settled_rss(pid: int, baseline: float) -> float:
    """guard's resident memory once idle connections are gone and the heap was trimmed (at most
    every 10 s)."""
    rss = rss_mib(pid)
    for _ in range(200):
        if rss - baseline <= 20:
            break
        await asyncio.sleep(0.1)
        rss = rss_mib(pid)
    return rss


def _print(phases: list[Phase], baseline: float, peak: float, after: float, limit: float,
           warm: Counter[str]) -> None:
    scale = "full" if FULL else "make test"
    print(f"\nexhaustion ({scale}: maxConnections {SCALE.max_connections}, attacker maxInflight "
          f"{SCALE.max_inflight}; warm-up {warm['200']}/{sum(warm.values())} ok)")
    print(f"{'attack':26} {'sockets':>7} {'well-behaved ok':>16} {'held':>5} {'closed':>7} {'RSS peak':>9}"
          "  guard")
    for p in phases:
        print(f"{p.name:26} {p.sockets:7d} {f'{p.ok}/{p.total}':>11} {100 * p.ok / max(1, p.total):4.0f}%"
              f" {p.held:5.0f} {p.closed:7d} {p.rss_peak:7.1f}Mi  {p.guard_did}")
    print(f"RSS baseline {baseline:.1f} MiB, peak {peak:.1f} MiB (limit {limit:.0f} MiB), "
          f"after {after:.1f} MiB")
