"""`guard serve` with TLS under half-finished handshakes: every socket counts against
`limits.maxConnections` from accept, a handshake that does not finish within
`limits.handshakeTimeout` is closed, a well-behaved client still gets in, and the memory the
attack took comes back."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from guard.cli.certs import make_ca, make_server_cert, write_pair
from tests.attacks import close_all, closed_by_peer, half_open_tls
from tests.proxy_fakes import FakeApiServer, GuardProcess, write_settings
from tests.scrape import figures, rss_mib, trusting

MAX_CONNECTIONS = 50
ATTACKERS = 10 * MAX_CONNECTIONS
ALICE = {"Authorization": "Bearer alice-token"}


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def guard(tmp_path: Path, api: FakeApiServer) -> AsyncIterator[GuardProcess]:
    ca = make_ca()
    write_pair(tmp_path, "ca", ca)
    write_pair(tmp_path, "server", make_server_cert(ca))
    tls = f"tls: {{cert: {tmp_path}/server.crt, key: {tmp_path}/server.key}}\n"
    limits = f"limits: {{maxConnections: {MAX_CONNECTIONS}, handshakeTimeout: 1s, idleTimeout: 5m}}\n"
    process = await GuardProcess(write_settings(tmp_path, [api.url], extra=tls + limits)).start()
    yield process
    await process.stop()


async def _well_behaved(url: str, ca: Path, rounds: int, statuses: Counter[str]) -> None:
    """A TLS client that opens a new connection for every request (the hardest case: each must be
    accepted and handshaken while the attack holds the listener). Like client-go with a GET, it
    tries again (twice at most) when its connection is closed before an answer: a flood evicts
    the oldest connections still in their handshake, and under load that may be one of its own."""
    for _ in range(rounds):
        for attempt in range(3):
            connector = aiohttp.TCPConnector(ssl=trusting(ca), force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:
                try:
                    async with session.get(url + "/api/v1/pods", headers=ALICE,
                                           timeout=aiohttp.ClientTimeout(total=10)) as answer:
                        statuses[str(answer.status)] += 1
                        break
                except aiohttp.ClientConnectionError as e:
                    statuses["retried" if attempt < 2 else type(e).__name__] += 1
        await asyncio.sleep(0.05)


async def test_half_open_handshakes_count_from_accept_end_at_the_timeout_and_give_memory_back(
        guard: GuardProcess, tmp_path: Path) -> None:
    """500 sockets that send half a ClientHello against maxConnections 50: guard never holds more
    than 50 connections, closes every one of the 500, a client making 20 requests on new TLS
    connections meanwhile gets 20 answers, and guard's resident memory comes back to within 20 MiB
    of where it started."""
    assert guard.proc is not None
    host, port = guard.url.removeprefix("https://").rsplit(":", 1)
    baseline = rss_mib(guard.proc.pid)
    statuses: Counter[str] = Counter()
    client = asyncio.ensure_future(_well_behaved(guard.url, tmp_path / "ca.crt", 20, statuses))
    socks = await half_open_tls(host, int(port), ATTACKERS)
    held: list[float] = []
    try:
        for _ in range(400):  # until guard has closed all of them (1 s handshakes, or evictions)
            held.append((await figures(guard.admin))["guard_connections_open"])
            if closed_by_peer(socks) == ATTACKERS and client.done():
                break
            await asyncio.sleep(0.1)
        closed = closed_by_peer(socks)
        await client
    finally:
        close_all(socks)
    peak = rss_mib(guard.proc.pid)
    after = await _settled_rss(guard.proc.pid, baseline)
    seen = await figures(guard.admin)
    print(f"half-open TLS: {ATTACKERS} sockets, held at most {max(held):.0f} (limit {MAX_CONNECTIONS}), "
          f"closed {closed}; client {dict(statuses)}; RSS baseline {baseline:.1f} MiB, "
          f"peak {peak:.1f}, after {after:.1f}")
    assert max(held) <= MAX_CONNECTIONS
    assert closed == ATTACKERS
    assert statuses["200"] == 20 and set(statuses) <= {"200", "retried"}
    assert seen["guard_connections_evicted_total"] + seen["guard_connections_handshakes_failed_total"] \
        + seen["guard_connections_refused_total"] >= ATTACKERS
    assert after - baseline <= 20


async def _settled_rss(pid: int, baseline: float) -> float:
    """guard's resident memory once the sweep has trimmed the heap (it trims at most every 10 s)."""
    rss = rss_mib(pid)
    for _ in range(150):
        if rss - baseline <= 20:
            break
        await asyncio.sleep(0.1)
        rss = rss_mib(pid)
    return rss
