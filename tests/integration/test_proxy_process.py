"""`guard serve` as a real process: bounded memory on a huge LIST, SIGHUP reload, SIGTERM drain."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from chaos.ports import free_ports
from tests.proxy_fakes import GUARD_TOKEN, FakeApiServer, GuardProcess, event, write_settings

ALICE = {"Authorization": "Bearer alice-token"}
BODY = 64 * 1024 * 1024


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def guard(tmp_path: Path, api: FakeApiServer) -> AsyncIterator[GuardProcess]:
    process = await GuardProcess(write_settings(tmp_path, [api.url])).start()
    yield process
    await process.stop()


async def test_a_64_mb_list_passes_with_bounded_memory(guard: GuardProcess) -> None:
    """64 MB stream through guard: every byte arrives and guard's peak RSS grows by far less."""
    async with aiohttp.ClientSession() as client:
        async with client.get(guard.url + "/api/v1/pods", headers=ALICE) as r:  # warm up pools and caches
            await r.read()
        before = guard.peak_rss_kib()
        received = 0
        async with client.get(guard.url + f"/big?bytes={BODY}", headers=ALICE) as r:
            assert r.status == 200
            async for chunk in r.content.iter_any():
                received += len(chunk)
        grown = guard.peak_rss_kib() - before
    assert received == BODY
    assert grown * 1024 < BODY / 8, f"guard's peak RSS grew by {grown} KiB for a {BODY >> 20} MiB body"


async def test_a_client_that_stops_reading_a_large_list_holds_guard_to_bounded_memory(
        guard: GuardProcess) -> None:
    """A large answer of known length passes socket to socket; a client that stops reading pauses
    the api-server side instead of filling guard's memory, and still gets every byte afterwards."""
    host, port = guard.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
    writer.write(f"GET /big?bytes={BODY} HTTP/1.1\r\nHost: guard\r\n"
                 "Authorization: Bearer alice-token\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert f"Content-Length: {BODY}".encode() in head
    received = len(await reader.readexactly(1 << 20))
    before = guard.peak_rss_kib()
    await asyncio.sleep(1.0)  # the client reads nothing; the upstream would send 63 MB more
    grown = guard.peak_rss_kib() - before
    while received < BODY:
        received += len(await reader.read(1 << 20))
    writer.close()
    assert received == BODY
    assert grown * 1024 < BODY / 8, f"guard's peak RSS grew by {grown} KiB while the client did not read"


async def test_sighup_with_a_bad_file_keeps_the_old_settings_and_a_good_one_applies(
        guard: GuardProcess, api: FakeApiServer, tmp_path: Path) -> None:
    """A broken reload is logged with file and field and changes nothing; a valid one takes effect."""
    config = tmp_path / "guard.yaml"
    good = config.read_text()
    async with aiohttp.ClientSession() as client:
        config.write_text(good.replace("forwarding: passthrough", "forwarding: impersonation"))
        guard.signal(signal.SIGHUP)
        line = await guard.wait_for_log("reload rejected")
        assert "guard.yaml:" in line and ": forwarding: must be one of" in line  # file, line, field
        async with client.get(guard.url + "/api/v1/pods", headers=ALICE) as r:
            assert r.status == 200
        assert api.seen[-1].header("Authorization") == ["Bearer alice-token"]

        config.write_text(good.replace("forwarding: passthrough", "forwarding: impersonate"))
        guard.signal(signal.SIGHUP)
        await guard.wait_for_log("reloaded settings")
        async with client.get(guard.url + "/api/v1/pods", headers=ALICE) as r:
            assert r.status == 200
        assert api.seen[-1].header("Authorization") == [f"Bearer {GUARD_TOKEN}"]
        assert api.seen[-1].header("Impersonate-User") == ["alice"]
        async with client.get(guard.admin + "/metrics") as r:
            text = await r.text()
    assert 'guard_settings_reloads_total{result="rejected"} 1.0' in text
    assert 'guard_settings_reloads_total{result="applied"} 1.0' in text


async def test_sigterm_ends_watches_cleanly_and_lets_ordinary_requests_finish(
        guard: GuardProcess, api: FakeApiServer) -> None:
    """On SIGTERM an open watch ends as a complete response, an in-flight request still gets its
    answer, and the process exits 0."""
    async with aiohttp.ClientSession() as client:
        watch = await client.get(guard.url + "/api/v1/pods?watch=true", headers=ALICE)
        await api.watch_events.put(event("ADDED", "p0"))
        assert b"p0" in await asyncio.wait_for(watch.content.readline(), 5)
        held = asyncio.ensure_future(client.get(guard.url + "/api/v1/namespaces/hold/pods", headers=ALICE))
        for _ in range(100):
            if any("/hold/" in s.path for s in api.seen):
                break
            await asyncio.sleep(0.05)
        guard.signal(signal.SIGTERM)
        assert await asyncio.wait_for(watch.content.read(), 10) == b""  # clean end, no payload error
        api.hold.set()
        answer = await asyncio.wait_for(held, 10)
        assert answer.status == 200
        answer.release()
        watch.release()
    assert await guard.stop() == 0


@pytest.mark.parametrize("busy", ["listen", "admin"])
def test_a_busy_port_is_one_clear_line_and_exit_1(tmp_path: Path, busy: str) -> None:
    """No traceback and no "Unclosed client session": the address at fault and why, then exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = f"127.0.0.1:{free_ports(1)}"
        addresses = (f"127.0.0.1:{port}", other) if busy == "listen" else (other, f"127.0.0.1:{port}")
        config = tmp_path / "guard.yaml"
        config.write_text(f"listen: {addresses[0]}\nadmin: {addresses[1]}\n"
                          "clusters: [{name: dev, server: 'http://127.0.0.1:1', token: t}]\n")
        done = subprocess.run([sys.executable, "-m", "guard", "serve", "--config", str(config)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"{config}: {busy}: cannot listen on 127.0.0.1:{port}: error while attempting to bind on address "
        f"('127.0.0.1', {port}): address already in use"]
