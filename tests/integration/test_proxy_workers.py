"""`guard serve --workers N`: every worker serves on the one port, quotas are split, SIGTERM stops all."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

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


def established_on(pid: int, port: int) -> int:
    """How many accepted connections on `port` process `pid` holds open (from /proc, no tools)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
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
