"""Hostile clients as plain sockets, for the connection-limit tests and the exhaustion test: half a
TLS ClientHello, connections that never send, request bodies that never come, answers never read.

Each helper opens non-blocking sockets and returns them; `closed_by_peer` counts how many the server
has closed since. Import: `from tests.attacks import ...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
from collections.abc import Iterable

ALICE = "alice-token"


def client_hello() -> bytes:
    """The first flight of a TLS client: a whole ClientHello record."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="guard")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def connect(host: str, port: int, count: int, *, receive_buffer: int | None = None,
                  batch: int = 100) -> list[socket.socket]:
    """`count` TCP connections (non-blocking), opened `batch` at a time so the listen backlog keeps
    up; `receive_buffer` shrinks SO_RCVBUF before connecting (a client that reads nothing then
    lets only that much of an answer leave guard). Those the kernel could not connect within a few
    seconds (their SYNs dropped by a full backlog) are closed and left out: they never reached guard."""
    opened: list[socket.socket] = []
    for start in range(0, count, batch):
        for _ in range(min(batch, count - start)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if receive_buffer is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect((host, port))
            opened.append(sock)
        await asyncio.sleep(0.05)
    connected = await _connected(opened)
    close_all(sock for sock in opened if sock not in connected)
    return [sock for sock in opened if sock in connected]


async def _connected(socks: list[socket.socket], tries: int = 50) -> set[socket.socket]:
    """Those of `socks` whose connection is established (polled for up to `tries` x 0.1 s)."""
    done: set[socket.socket] = set()
    for _ in range(tries):
        poller = select.poll()
        waiting = {sock.fileno(): sock for sock in socks if sock not in done}
        for fd in waiting:
            poller.register(fd, select.POLLOUT)
        for fd, events in poller.poll(0):
            if events & select.POLLOUT and not waiting[fd].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                done.add(waiting[fd])
        if len(done) == len(socks):
            break
        await asyncio.sleep(0.1)
    return done


def send(socks: Iterable[socket.socket], data: bytes) -> int:
    """Send `data` on every socket that takes it; returns how many did."""
    sent = 0
    for sock in socks:
        try:
            sock.send(data)
            sent += 1
        except OSError:
            continue
    return sent


async def half_open_tls(host: str, port: int, count: int, *, batch: int = 100) -> list[socket.socket]:
    """Connections that send half a ClientHello and then nothing."""
    socks = await connect(host, port, count, batch=batch)
    hello = client_hello()
    await asyncio.sleep(0.1)
    send(socks, hello[: len(hello) // 2])
    return socks


async def idle(host: str, port: int, count: int, *, batch: int = 100) -> list[socket.socket]:
    """Connections that send nothing at all."""
    return await connect(host, port, count, batch=batch)


def slow_body_request(path: str, *, token: str = ALICE, length: int = 100_000) -> bytes:
    """A POST whose head announces `length` body bytes, and the first few of them."""
    return (f"POST {path} HTTP/1.1\r\nHost: guard\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{\"a\"").encode()


async def slow_bodies(host: str, port: int, count: int, path: str, *,
                      token: str = ALICE) -> list[socket.socket]:
    """Requests whose body never arrives."""
    socks = await connect(host, port, count)
    await asyncio.sleep(0.1)
    send(socks, slow_body_request(path, token=token))
    return socks


async def slow_readers(host: str, port: int, count: int, path: str, *,
                       token: str = ALICE) -> list[socket.socket]:
    """GETs of a large answer whose client never reads a byte (4 KiB receive buffers)."""
    socks = await connect(host, port, count, receive_buffer=4096)
    await asyncio.sleep(0.1)
    send(socks, f"GET {path} HTTP/1.1\r\nHost: guard\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    return socks


def closed_by_peer(socks: Iterable[socket.socket]) -> int:
    """How many of `socks` the server has closed or reset, seen without taking a byte from them (a
    slow reader must stay one): poll's hang-up, error and peer-shut-down events."""
    ended = select.POLLRDHUP | select.POLLHUP | select.POLLERR
    poller = select.poll()
    open_ = [sock.fileno() for sock in socks if sock.fileno() >= 0]
    for fd in open_:
        poller.register(fd, ended)
    gone = sum(1 for _, events in poller.poll(0) if events & ended)
    return gone + sum(1 for sock in socks if sock.fileno() < 0)


def close_all(socks: Iterable[socket.socket]) -> None:
    for sock in socks:
        sock.close()
