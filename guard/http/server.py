"""The main listener's HTTP/1.1 server: guard's own asyncio protocol around aiohttp's C request parser.

aiohttp's `web.Server` costs more per request than the rest of guard's request path: a task per
connection plus one per request, a `BaseRequest`, a `StreamResponse` and its payload writer. This
server keeps what a proxy needs and nothing else: one task per request, a small `Request`, answers
written as bytes (`guard.http.answers`), and body streams with flow control both ways. Each
connection is a `guard.http.connection.Connection`; this module makes them, counts them and sweeps
them.

Every accepted socket counts against `max_connections` at once, before its TLS handshake. At the
limit a newcomer takes the place of the least useful connection: one that has not served a request
yet (a handshake, a head still arriving, a refused body being dropped), oldest first, else the one
idle longest between requests — as nginx reuses keep-alive connections when it runs out; only when
every connection is serving a request is the newcomer closed. Once a second (`SWEEP_EVERY`) the
sweep closes idle connections, enforces body deadlines and write stalls, and gives freed memory
back once a burst of connections has ended. The handler must answer through the `Request` (`send`,
`stream`, `pipe`); one that returns without answering gets a 500 Status, one that raises gets its
connection aborted. This module must never log a header or a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp.http_parser import HttpRequestParser

from guard.http import memory
from guard.http.connection import Connection
from guard.http.request import Request

log = logging.getLogger(__name__)
READ_LIMIT = 64 * 1024
"""Request body StreamReader low-water mark: above twice this, reading the client socket pauses."""
SWEEP_EVERY = 1.0
"""Seconds between two passes over the connections (idle, body deadlines, write stalls)."""
TRIM_AFTER = 64
"""Trim the heap once the open connections have fallen by half their high-water mark, and by at
least this many, since the last trim (a burst has ended)."""
TRIM_EVERY = 10.0
"""Seconds at least between two trims (a trim costs page faults when the memory is used again)."""

Handler = Callable[[Request], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    """What one client connection may hold, and for how long (guard.yaml's `limits:`)."""

    max_connections: int
    """Connections at once, counted from accept."""
    max_line: int
    """Longest request line or header field, bytes."""
    idle_timeout: float
    """Seconds with no request: from accept, or since the last answer."""
    handshake_timeout: float = 10.0
    """Seconds a TLS handshake (and its closing exchange) may take."""
    body_timeout: float = 60.0
    """Seconds the whole request body may take to arrive, from its head."""
    write_timeout: float = 60.0
    """Seconds a client may take no byte of what waits for it."""
    http2_max_streams: int = 100
    """Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS)."""
    http2_max_header_list: int = 256 * 1024
    """Largest header list of one HTTP/2 request, bytes, decompressed (SETTINGS_MAX_HEADER_LIST_SIZE)."""
    http2_max_resets: float = 100.0
    """Streams an HTTP/2 client may reset a second on average (a burst of twice that) before GOAWAY."""
    http2_goaway_chance: float = 0.0
    """Chance that a new stream makes guard tell its client GOAWAY (to spread clients over replicas)."""


@dataclass
class ConnectionStats:
    """What happened to client connections (guard_connections_<name>_total)."""

    refused: int = 0
    """Closed right after accept: at maxConnections with every connection serving a request."""
    evicted: int = 0
    """Closed to make room for a new one: the oldest serving nothing (handshake, idle, refused body)."""
    handshakes_failed: int = 0
    """TLS handshakes that failed or took longer than handshakeTimeout."""
    idle_closed: int = 0
    """Closed after idleTimeout without a request (a handshake or a head still arriving included)."""
    body_timeouts: int = 0
    """Request bodies that had not arrived whole within bodyTimeout (answered 408, closed)."""
    write_timeouts: int = 0
    """Clients cut (HTTP/2: streams reset) because they took no byte of what was queued for them for
    writeTimeout."""
    http2: int = 0
    """Connections that chose HTTP/2 (ALPN h2)."""
    http2_errors: int = 0
    """HTTP/2 connections ended by a protocol error (too many streams, a header list too large, a
    CONTINUATION flood, a malformed frame)."""
    http2_floods: int = 0
    """HTTP/2 connections ended with GOAWAY ENHANCE_YOUR_CALM: resets, PINGs or SETTINGS too fast."""
    http2_rebalanced: int = 0
    """HTTP/2 clients told GOAWAY by `http2GoawayChance` (to reconnect, perhaps to another replica)."""


class Server:
    """The protocol factory for `loop.create_server`, and the connections it made."""

    def __init__(self, handler: Handler, limits: Limits, *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.limits = limits
        """Replaced whole on a settings reload: the sweep and new connections read the new one."""
        self.tls = tls
        """With TLS, `accept_tls` accepts and each connection starts TLS itself, so that it counts
        from accept; without, the loop accepts (`loop.create_server(server)`)."""
        self.connections: set[Connection] = set()
        self.stats = ConnectionStats()
        self.closing = False
        self.loop = asyncio.get_running_loop()
        self._fresh: OrderedDict[Connection, None] = OrderedDict()
        """Connections that serve nothing and never served a request, oldest first."""
        self._idle: OrderedDict[Connection, None] = OrderedDict()
        """Kept-alive connections between requests, longest idle first."""
        self._high = 0
        """The most connections open at once since the heap was last trimmed."""
        self._trimmed_at = self.loop.time()
        self._sweeper = self.loop.create_task(self._sweep())
        self._acceptor: asyncio.Task[None] | None = None

    def __call__(self) -> Connection:
        return Connection(self)

    def figures(self) -> dict[str, int]:
        """The stats, and the connections open now (`open`, counted from accept)."""
        return {**vars(self.stats), "open": len(self.connections)}

    def accept_tls(self, listener: socket.socket, *, backlog: int) -> None:
        """Listen on the bound `listener` and serve TLS on what it accepts, counting each connection
        before its handshake."""
        assert self.tls is not None
        listener.listen(backlog)
        listener.setblocking(False)
        self._acceptor = self.loop.create_task(self._accept(listener, self.tls))

    async def _accept(self, listener: socket.socket, context: ssl.SSLContext) -> None:
        try:
            while True:
                try:
                    sock, _ = await self.loop.sock_accept(listener)
                except OSError as e:  # out of file descriptors, say: refuse for a moment, not forever
                    log.warning("accepting a connection failed: %s", e.strerror)
                    await asyncio.sleep(0.1)
                    continue
                conn = Connection(self)
                if self.admit(conn):
                    conn.secure(sock, context)
                else:
                    sock.close()
        finally:
            listener.close()

    def stop_accepting(self) -> None:
        if self._acceptor is not None:
            self._acceptor.cancel()

    def new_parser(self, conn: Connection) -> HttpRequestParser:
        return HttpRequestParser(conn, self.loop, READ_LIMIT, max_line_size=self.limits.max_line,
                                 max_field_size=self.limits.max_line, max_headers=256, auto_decompress=False)

    # -- accounting: Connection calls these as it changes state

    def admit(self, conn: Connection) -> bool:
        """Count a just-accepted connection, making room when full; False: close it."""
        if self.closing:
            return False
        if len(self.connections) >= self.limits.max_connections and not self._evict():
            self.stats.refused += 1
            return False
        self.connections.add(conn)
        self._fresh[conn] = None
        self._high = max(self._high, len(self.connections))
        return True

    def _evict(self) -> bool:
        for spare in (self._fresh, self._idle):
            if spare:
                victim, _ = spare.popitem(last=False)
                self.stats.evicted += 1
                victim.evict()
                return True
        return False

    def busy(self, conn: Connection) -> None:
        """`conn` serves a request (or pipes): never evicted."""
        self._fresh.pop(conn, None)
        self._idle.pop(conn, None)

    def spare(self, conn: Connection, *, fresh: bool) -> None:
        """`conn` serves nothing now; `fresh`: it has proved nothing either (first to go)."""
        self.busy(conn)
        if conn in self.connections:
            (self._fresh if fresh else self._idle)[conn] = None

    def gone(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.busy(conn)

    # -- the sweep

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            now = self.loop.time()
            for conn in list(self.connections):
                try:
                    conn.sweep(now)
                except Exception:  # one connection's trouble must not stop every connection's clocks
                    log.exception("sweeping a connection failed")
            self._trim(now)

    def _trim(self, now: float) -> None:
        count = len(self.connections)
        if self._high - count >= max(TRIM_AFTER, self._high // 2) and now - self._trimmed_at >= TRIM_EVERY:
            memory.trim()
            self._high, self._trimmed_at = count, now

    async def shutdown(self, timeout: float) -> None:
        """Close idle connections now, let busy ones finish for `timeout` seconds, then abort them
        (HTTP/2 connections are told GOAWAY at once: their clients open new streams elsewhere)."""
        self.closing = True
        now = self.loop.time()
        for conn in list(self.connections):
            conn.close_if_idle(now, 0.0)
        deadline = now + timeout
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
            for conn in list(self.connections):
                conn.close_if_idle(self.loop.time(), 0.0)
        for conn in list(self.connections):
            conn.evict()
        self.stop_accepting()
        for task in (self._sweeper, self._acceptor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
