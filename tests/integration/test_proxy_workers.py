"""`guard serve --workers N`: every worker serves on the one port, quotas are split, SIGTERM stops all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.proxy_fakes import FakeApiServer, write_settings

ALICE = {"Authorization": "Bearer alice-token"}
WORKERS = 2
CONNECTIONS = 24

POLICY = """apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata:
  name: team-a
spec:
  subjects:
    - {kind: Group, name: team-a}
  rules:
    - name: reads
      verbs: [get, list]
      quota: {rate: 1/m, burst: 6, scope: tenant}
"""


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer()
    await fake.start()
    yield fake
    await fake.stop()


class Workers:
    """`guard serve --workers N` as a child process group: the parent and its forked workers."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str, admin: str) -> None:
        self.proc, self.url, self.admin = proc, url, admin

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(pid) for pid in children]


async def start_workers(config: Path, count: int = WORKERS) -> Workers:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "guard.cli", "serve", "--config", str(config), "--workers", str(count),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    assert line.startswith("guard serving "), line
    parts = line.split()
    return Workers(proc, parts[2], parts[4])


async def stop(workers: Workers) -> int:
    if workers.proc.returncode is None:
        workers.proc.terminate()
    try:
        return await asyncio.wait_for(workers.proc.wait(), 30)
    except TimeoutError:
        workers.proc.kill()
        return await workers.proc.wait()


@pytest.fixture
async def guard(tmp_path: Path, api: FakeApiServer) -> AsyncIterator[Workers]:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "team-a.yaml").write_text(POLICY)
    running = await start_workers(write_settings(tmp_path, [api.url], extra=f"policies: {policies}\n"))
    yield running
    await stop(running)


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def established_on(pid: int, port: int) -> int:
    """How many accepted connections on `port` process `pid` holds open (from /proc, no tools)."""
    inodes = socket_inodes(pid)
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            local_port, state, inode = int(cols[1].rsplit(":", 1)[1], 16), cols[3], cols[9]
            count += local_port == port and state == "01" and inode in inodes
    return count


async def get_on_new_connections(url: str, n: int) -> list[int]:
    """One GET on each of `n` separate connections, all held open until every answer is in."""
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=False)) for _ in range(n)]
    try:
        async def one(session: aiohttp.ClientSession) -> int:
            async with session.get(url + "/api/v1/namespaces/a/pods/p1", headers=ALICE) as r:
                await r.read()
                return r.status
        return list(await asyncio.gather(*(one(s) for s in sessions)))
    finally:
        for session in sessions:
            await session.close()


async def test_every_worker_accepts_connections_on_the_one_port(guard: Workers) -> None:
    """24 client connections to one port are spread over both worker processes, and all are served."""
    sessions = [aiohttp.ClientSession() for _ in range(CONNECTIONS)]
    try:
        for session in sessions:
            async with session.get(guard.url + "/version", headers=ALICE) as r:
                assert r.status in (200, 429)  # answered by guard either way
        pids = guard.worker_pids()
        held = {pid: established_on(pid, guard.port) for pid in pids}
    finally:
        for session in sessions:
            await session.close()
    assert len(pids) == WORKERS
    assert sum(held.values()) == CONNECTIONS
    assert all(count > 0 for count in held.values()), held


async def test_workers_share_one_quota_instead_of_multiplying_it(guard: Workers) -> None:
    """Burst 6 split over 2 workers: 40 requests on 40 connections get at most 6 admitted, not 12."""
    statuses = await get_on_new_connections(guard.url, 40)
    admitted = statuses.count(200)
    assert statuses.count(200) + statuses.count(429) == 40
    assert 2 <= admitted <= 6


async def test_sigterm_to_the_parent_stops_every_worker(guard: Workers) -> None:
    """SIGTERM: the parent exits 0 and no worker process is left, and the port refuses connections."""
    async with aiohttp.ClientSession() as session, session.get(guard.url + "/version", headers=ALICE) as r:
        assert r.status in (200, 429)
    pids = guard.worker_pids()
    assert len(pids) == WORKERS
    guard.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(guard.proc.wait(), 30) == 0
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", guard.port)


async def test_a_worker_that_dies_takes_the_group_down(guard: Workers) -> None:
    """A worker killed from outside: the parent stops the other one and exits non-zero."""
    first, *others = guard.worker_pids()
    os.kill(first, signal.SIGKILL)
    assert await asyncio.wait_for(guard.proc.wait(), 30) == 1
    assert [pid for pid in others if Path(f"/proc/{pid}").exists()] == []


async def admin_get(admin: str, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(admin + path) as r:
        return r.status, await r.text()


def requests_by_worker(text: str) -> dict[str, float]:
    """guard_requests_total summed per `worker` label."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "guard_requests_total":
                worker = sample.labels["worker"]
                totals[worker] = totals.get(worker, 0.0) + sample.value
    return totals


def gathering(text: str) -> dict[tuple[str, str], float]:
    """The guard_workers_* samples, by (name, worker)."""
    return {(s.name, s.labels["worker"]): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name.startswith("guard_workers_")}


async def test_metrics_count_the_requests_of_every_worker(guard: Workers) -> None:
    """40 requests on 40 connections: /metrics on the admin address sums to 40 over both workers,
    each labelled, every family's HELP and TYPE once, and every sample carries its worker."""
    statuses = await get_on_new_connections(guard.url, 40)
    assert statuses.count(200) + statuses.count(429) == 40
    for _ in range(50):  # the counter moves just after the answer leaves; never more than 40
        status, text = await admin_get(guard.admin, "/metrics")
        assert status == 200
        if sum(requests_by_worker(text).values()) >= 40:
            break
        await asyncio.sleep(0.02)
    per_worker = requests_by_worker(text)
    assert sum(per_worker.values()) == 40
    assert set(per_worker) == {"0", "1"} and all(v > 0 for v in per_worker.values()), per_worker
    comments = [line.split(" ", 3)[:3] for line in text.splitlines() if line.startswith("#")]
    assert len(comments) == len({tuple(c) for c in comments})
    assert sum(c[1] == "TYPE" and c[2] == "guard_requests_total" for c in comments) == 1
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert all("worker" in s.labels for s in samples)
    assert gathering(text) == {("guard_workers_up", "0"): 1.0, ("guard_workers_up", "1"): 1.0,
                               ("guard_workers_scrape_errors_total", "1"): 0.0}


async def test_each_workers_debug_pages_by_query(guard: Workers) -> None:
    """Requests on one connection reach one worker: exactly one of ?worker=0 and ?worker=1 shows the
    tenant's bucket; an unknown worker is a 404 naming the workers."""
    async with aiohttp.ClientSession() as session:  # one keep-alive connection: one worker
        for _ in range(2):
            async with session.get(guard.url + "/api/v1/namespaces/a/pods/p1", headers=ALICE) as r:
                assert r.status == 200
    pages = []
    for worker in ("0", "1"):
        status, text = await admin_get(guard.admin, f"/debug/guard/buckets?worker={worker}")
        assert status == 200
        pages.append([bucket["key"] for bucket in json.loads(text)])
    assert sorted(pages, key=len) == [[], ["{team-a}:reads"]], pages
    status, default = await admin_get(guard.admin, "/debug/guard/buckets")
    assert (status, [bucket["key"] for bucket in json.loads(default)]) == (200, pages[0])
    for worker in ("2", "x"):
        status, text = await admin_get(guard.admin, f"/debug/guard/buckets?worker={worker}")
        assert (status, json.loads(text)["workers"]) == (404, [0, 1])
    status, text = await admin_get(guard.admin, "/debug/guard/nothing?worker=1")
    assert status == 404 and "buckets" in json.loads(text)["pages"]


def unix_listeners(pid: int) -> list[Path]:
    """The paths of the unix sockets process `pid` listens on (from /proc/net/unix)."""
    inodes = socket_inodes(pid)
    rows = [line.split() for line in Path("/proc/net/unix").read_text().splitlines()[1:]]
    return [Path(cols[7]) for cols in rows if len(cols) == 8 and cols[6] in inodes and cols[3] == "00010000"]


async def test_a_sibling_that_does_not_answer_is_left_out_and_counted(guard: Workers) -> None:
    """Worker 1 stopped (SIGSTOP): /metrics still answers 200 with worker 0's samples alone,
    guard_workers_up{worker="1"} 0 and one scrape error; its debug pages answer 502."""
    (sibling,) = [pid for pid in guard.worker_pids() if unix_listeners(pid)]
    os.kill(sibling, signal.SIGSTOP)
    try:
        status, text = await admin_get(guard.admin, "/metrics")
        debug_status, _ = await admin_get(guard.admin, "/debug/guard/config?worker=1")
    finally:
        os.kill(sibling, signal.SIGCONT)
    assert status == 200 and debug_status == 502
    assert gathering(text) == {("guard_workers_up", "0"): 1.0, ("guard_workers_up", "1"): 0.0,
                               ("guard_workers_scrape_errors_total", "1"): 1.0}
    workers = {s.labels["worker"] for f in text_string_to_metric_families(text) for s in f.samples
               if not s.name.startswith("guard_workers_")}
    assert workers == {"0"}
    status, text = await admin_get(guard.admin, "/metrics")
    assert status == 200 and gathering(text)[("guard_workers_up", "1")] == 1.0


async def test_the_private_socket_directory_is_removed_with_the_parent(guard: Workers) -> None:
    """The workers' admin sockets live in a mode-0700 directory that is gone once the parent exits."""
    listeners = {pid: unix_listeners(pid) for pid in guard.worker_pids()}
    assert sorted(len(paths) for paths in listeners.values()) == [0, 1], listeners
    (path,) = [path for paths in listeners.values() for path in paths]
    assert path.name == "admin-1.sock" and path.parent.name.startswith("guard-workers-")
    assert path.parent.stat().st_mode & 0o777 == 0o700
    guard.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(guard.proc.wait(), 30) == 0
    assert not path.parent.exists()
