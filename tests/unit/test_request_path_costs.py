"""What the request path spends per request, counted rather than timed (issue 16): calls that cost a
system call, and objects built per request. Each test counts over many requests through real
sockets, so a cost that comes back per request fails it."""

from __future__ import annotations

import asyncio

import pytest

from guard.http import pool as pool_module
from guard.http.pool import Pool

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class _Static(asyncio.Protocol):
    """An upstream answering every request head with one small answer, keep-alive."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for _ in range(data.count(b"\r\n\r\n")):
            self.transport.write(ANSWER)  # type: ignore[attr-defined]


async def test_the_pool_looks_its_event_loop_up_once_not_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Python 3.11 `asyncio.get_running_loop()` makes a getpid() system call; the pool took it
    twice per request (acquire, give back). It now keeps the loop it first ran on."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Static, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    calls = 0
    real = asyncio.get_running_loop

    def counting() -> asyncio.AbstractEventLoop:
        nonlocal calls
        calls += 1
        return real()

    monkeypatch.setattr(pool_module.asyncio, "get_running_loop", counting)
    pool = Pool("127.0.0.1", port, ssl_context=None, connect_timeout=5)
    try:
        for _ in range(50):
            answer = await pool.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None, read_timeout=5)
            assert await answer.read() == b"{}"
            answer.release()
    finally:
        monkeypatch.undo()
        pool.close()
        server.close()
    assert pool.opened == 1  # one keep-alive connection served them all
    assert calls <= 1
