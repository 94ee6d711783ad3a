"""A slow reader holds its read-only seat in the simulator until its LIST body has been written, as
on a real api-server: with the seat limit at N, N readers that stop reading make the next request
get 429, and a reader that hangs up gives its seat back."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from chaos.processes import Processes, free_ports

TOKEN = "slowreader-admin"
SEATS = 3
# 100 pods of ~8 kB per namespace: a LIST body (~0.8 MB) far beyond any socket buffer.
SIM_ARGS = ("--seed-objects", "1000", "--seed-object-bytes", "8192", "--max-readonly-inflight", str(SEATS))


@pytest.fixture
def sim_port(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "tokens.csv").write_text(f'{TOKEN},admin,admin-uid,"system:masters"\n')
    port = free_ports(1)
    argv = [sys.executable, "-m", "chaos", "sim", "--listen", f"127.0.0.1:{port}", "--replicas", "1"]
    with Processes(tmp_path) as procs:
        proc = procs.spawn("sim", [*argv, "--token-file", str(tmp_path / "tokens.csv"), *SIM_ARGS])
        deadline = time.monotonic() + 30
        while "serving " not in proc.log_path.read_text():
            if not proc.alive or time.monotonic() > deadline:
                pytest.fail(f"simulator did not start:\n{proc.log_tail()}")
            time.sleep(0.05)
        yield port


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        yield s


async def slow_reader(port: int, namespace: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send a LIST and read only its status line: the server has answered and is writing the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1024)
    request = (
        f"GET /api/v1/namespaces/{namespace}/pods HTTP/1.1\r\nHost: sim\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n"
    )
    writer.write(request.encode())
    status_line = await reader.readline()
    assert status_line.startswith(b"HTTP/1.1 200"), status_line
    return reader, writer


async def probe(session: aiohttp.ClientSession, port: int) -> int:
    async with session.get(f"http://127.0.0.1:{port}/api/v1/namespaces/seed-1/pods/seed-1") as r:
        await r.read()
        return r.status


async def test_slow_readers_hold_seats_until_they_hang_up(
    sim_port: int, session: aiohttp.ClientSession
) -> None:
    assert await probe(session, sim_port) == 200
    readers = [await slow_reader(sim_port, f"seed-{i}") for i in range(SEATS)]
    try:
        # Every handler has returned (headers are out), yet the bodies still hold the seats.
        statuses = [await probe(session, sim_port) for _ in range(3)]
        assert statuses == [429, 429, 429]

        # One reader hangs up: its write fails, its seat comes back.
        readers[0][1].transport.abort()
        statuses = []
        for _ in range(100):
            statuses.append(await probe(session, sim_port))
            if statuses[-1] == 200:
                break
            await asyncio.sleep(0.05)
        assert statuses[-1] == 200
    finally:
        for _, writer in readers:
            writer.transport.abort()
