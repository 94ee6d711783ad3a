"""The TCP fault proxy forwards bytes exactly, and each fault does to a real socket what it says."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from chaos.faults import FaultProxy, send_command


@dataclass
class Echo:
    """An echo server that counts its connections and the bytes it received."""

    server: asyncio.Server
    connections: int = 0
    received: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    state: Echo

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        state.writers.append(writer)
        try:
            while data := await reader.read(65536):
                state.received += len(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        writer.close()

    state = Echo(await asyncio.start_server(handle, "127.0.0.1", 0))
    yield state
    for w in state.writers:
        w.close()
    state.server.close()


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(0, ("127.0.0.1", echo.port))
    await p.start()
    yield p
    await p.stop()


async def connect(p: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", p.port)


async def round_trip(p: FaultProxy, payload: bytes) -> float:
    reader, writer = await connect(p)
    start = time.perf_counter()
    writer.write(payload)
    await writer.drain()
    await asyncio.wait_for(reader.readexactly(len(payload)), 10)
    elapsed = time.perf_counter() - start
    writer.close()
    return elapsed


async def test_pass_through_is_byte_exact(proxy: FaultProxy) -> None:
    """Two megabytes of random bytes come back through the proxy unchanged."""
    payload = os.urandom(2 * 1024 * 1024)
    reader, writer = await connect(proxy)
    writer.write(payload)
    await writer.drain()
    echoed = await asyncio.wait_for(reader.readexactly(len(payload)), 10)
    assert echoed == payload
    writer.close()


async def test_half_close_still_delivers_the_answer(proxy: FaultProxy) -> None:
    """A client that shuts its write side after sending still reads the whole echo, then EOF."""
    reader, writer = await connect(proxy)
    writer.write(b"hello")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b"hello"
    writer.close()


async def test_reset_closes_the_client_side(proxy: FaultProxy) -> None:
    """After reset() the client's next read fails or ends instead of waiting forever."""
    reader, writer = await connect(proxy)
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
    assert proxy.reset() == 1
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    writer.close()


async def test_blackhole_leaves_requests_unanswered(proxy: FaultProxy, echo: Echo) -> None:
    """With blackhole on, the proxy accepts and reads, but the target never sees a byte."""
    proxy.blackhole = True
    reader, writer = await connect(proxy)
    writer.write(b"anyone there?")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.5)
    assert echo.received == 0
    writer.close()


async def test_blackhole_silences_a_live_connection(proxy: FaultProxy) -> None:
    """Switching blackhole on mid-connection stops the answers on that connection too."""
    reader, writer = await connect(proxy)
    writer.write(b"one")
    assert await asyncio.wait_for(reader.readexactly(3), 5) == b"one"
    proxy.blackhole = True
    writer.write(b"two")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.5)
    writer.close()


async def test_refuse_then_restore(proxy: FaultProxy) -> None:
    """refuse() makes connects fail with connection refused; restore() serves the same port again."""
    port = proxy.port
    await proxy.refuse()
    with pytest.raises(ConnectionRefusedError):
        await connect(proxy)
    await proxy.restore()
    assert proxy.port == port
    assert await round_trip(proxy, b"back") >= 0


async def test_drop_closes_new_connections_without_reaching_the_target(proxy: FaultProxy, echo: Echo) -> None:
    """With drop = 1 every new connection is closed at once and the target sees none."""
    proxy.drop = 1.0
    reader, writer = await connect(proxy)
    writer.write(b"x")
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)
    assert echo.connections == 0
    assert proxy.accepted == 1
    writer.close()


async def test_latency_adds_a_delay(proxy: FaultProxy) -> None:
    """A round trip with 0.2 s latency per direction takes clearly longer than one without."""
    plain = min([await round_trip(proxy, b"abc") for _ in range(3)])
    proxy.latency = 0.2
    slowed = await round_trip(proxy, b"abc")
    assert slowed > plain + 0.2


async def test_bandwidth_limit_slows_a_transfer(proxy: FaultProxy) -> None:
    """64 KB at 256 KB/s each way is clearly slower than the same transfer unlimited."""
    payload = os.urandom(64 * 1024)
    plain = await round_trip(proxy, payload)
    proxy.bandwidth = 256 * 1024
    limited = await round_trip(proxy, payload)
    assert limited > plain + 0.2


async def test_process_mode_takes_commands_on_its_control_port(echo: Echo) -> None:
    """`python -m chaos.faults` prints its ports and obeys `blackhole on` sent to the control port."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chaos.faults", "--target", f"127.0.0.1:{echo.port}",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        words = (await asyncio.wait_for(process.stdout.readline(), 10)).decode().split()
        port, control = int(words[1]), int(words[3])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hi")
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"hi"
        assert await send_command(control, "blackhole on") == "ok"
        assert (await send_command(control, "frobnicate")).startswith("error:")
        writer.write(b"hi")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.5)
        writer.close()
    finally:
        process.terminate()
        await process.wait()
