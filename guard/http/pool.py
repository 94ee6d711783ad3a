"""Keep-alive connections to one api-server endpoint (guard.http.client's connections): reuse, a
bounded idle set, one read-timeout sweep per pool instead of a timer per request, and the retry of
an idempotent request whose pooled connection the server had closed. It must never log a header.
"""

from __future__ import annotations

import asyncio
import ssl

from guard.http.client import Body, ConnectFailed, Connection, ConnectionBroken, Response

MAX_IDLE = 512
"""Most idle keep-alive connections kept per endpoint; more are closed when they come back."""
SWEEP_EVERY = 0.25
"""Seconds between two checks of the read timeouts of a pool's busy connections."""


class Pool:
    """Keep-alive connections to one endpoint. Unbounded in total (each watch holds one); at most
    MAX_IDLE idle ones are kept, for no longer than `keepalive` seconds."""

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None,
                 connect_timeout: float, keepalive: float = 30.0) -> None:
        self.host, self.port = host, port
        self._ssl = ssl_context
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._idle: list[Connection] = []
        self._all: set[Connection] = set()
        self._timed: set[Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop the pool's connections run on, kept: on Python 3.11 every
        `asyncio.get_running_loop()` costs a `getpid()` system call, twice per request here."""
        self.opened = 0
        """Connections opened so far (tests count reuse with it)."""

    async def request(self, method: str, head: bytes, body: Body, *,
                      chunked: bool = False, read_timeout: float | None = None,
                      retry_stale: bool = False) -> Response:
        """Send one request and return once the response head is in.

        Raises ConnectFailed, ConnectionBroken, BadResponse or TimeoutError."""
        while True:
            conn = self._idle_connection() or await self._connect()
            waiter = conn.begin(method, read_timeout)
            try:
                if body is None or isinstance(body, bytes):
                    assert conn.transport is not None
                    conn.transport.write(head + body if body else head)
                else:
                    await conn.send_stream(head, body, chunked=chunked)
                return await waiter
            except ConnectionBroken as e:
                conn.finish(keep=False)
                if not (retry_stale and conn.reused and not e.received):
                    raise
            except BaseException:
                conn.finish(keep=False)
                if not waiter.done():
                    waiter.cancel()
                raise

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _idle_connection(self) -> Connection | None:
        """The most recently used idle connection still fit for reuse (no coroutine: this is what
        almost every request gets), else None."""
        now = self._running_loop().time()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive:
                conn.reused = True
                return conn
            conn.finish(keep=False)
        return None

    async def _connect(self) -> Connection:
        loop = self._running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(loop, self), self.host, self.port, ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None)
        except (OSError, TimeoutError, ssl.SSLError) as e:
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {type(e).__name__}") from e
        self.opened += 1
        self._all.add(conn)
        return conn

    def watch(self, conn: Connection) -> None:
        """Check `conn`'s read timeout from now on: one sweep per pool, not a timer per request."""
        self._timed.add(conn)
        if self._sweeper is None:
            self._sweeper = self._running_loop().call_later(SWEEP_EVERY, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        loop = self._running_loop()
        now = loop.time()
        for conn in list(self._timed):
            if not conn.check_timeout(now):
                self._timed.discard(conn)
        if self._timed:
            self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep)

    def give_back(self, conn: Connection) -> None:
        if len(self._idle) >= MAX_IDLE:
            conn.finish(keep=False)
            return
        conn.idle_since = self._running_loop().time()
        self._idle.append(conn)

    def forget(self, conn: Connection) -> None:
        self._all.discard(conn)
        self._timed.discard(conn)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        """Close every connection, in use or idle (the runtime is being retired)."""
        self._idle.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._all):
            conn.finish(keep=False)
