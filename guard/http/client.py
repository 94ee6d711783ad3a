"""guard's HTTP/1.1 client for every request to one api-server endpoint.

A pool of persistent raw asyncio connections (uvloop when installed): the request head and a small
body leave in one `transport.write`, the answer is parsed by aiohttp's C `HttpResponseParser` into
a `StreamReader` whose flow control pauses the upstream socket when the client reads slowly, so a
watch holds no buffer beyond a chunk or two and no task of its own. A pooled connection that the
server closed before answering is retried on another one for idempotent requests. After a 101 the
connection leaves HTTP and becomes one side of a byte tunnel (`Response.pipe`, guard.http.tunnel).
A connection's protocol callbacks are one state machine (parse, pass through, pipe, time out), kept
in one module although it runs past 300 lines. This module must never log, or put into an error, a
header.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import aiohttp
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_parser import HttpResponseParser
from aiohttp.streams import StreamReader
from multidict import CIMultiDictProxy

from guard.http.pipes import pipe_bytes

READ_LIMIT = 512 * 1024
"""StreamReader low-water mark: above twice this, guard stops reading the upstream socket."""
MAX_LINE = 64 * 1024
"""Longest status line or header guard accepts from an api-server (bytes)."""
Body = bytes | AsyncIterator[bytes] | None
"""A request body: none, small and whole (it leaves with the head in one write), or a stream."""


class ConnectFailed(Exception):
    """No connection could be opened: nothing was sent, another endpoint may be tried."""


class ConnectionBroken(Exception):
    """The connection ended before a whole response head arrived."""

    def __init__(self, message: str, *, received: bool) -> None:
        super().__init__(message)
        self.received = received
        """Whether any byte of an answer came: if not, a reused connection was merely stale."""


class BadResponse(Exception):
    """The api-server's answer is not valid HTTP/1.1."""


class Response:
    """One upstream answer: status, headers and the body as a stream (duck-types what guard.upstream.exchange
    reads of an aiohttp ClientResponse). `release()` returns the connection to the pool once the
    body has been read to its end, otherwise closes it."""

    __slots__ = ("_conn", "content", "content_length", "headers", "reason", "should_close", "status")

    def __init__(self, conn: Connection, message: Any, payload: StreamReader) -> None:
        self._conn: Connection | None = conn
        self.status: int = message.code
        self.reason: str = message.reason
        self.headers: CIMultiDictProxy[str] = message.headers
        self.content = payload
        self.should_close: bool = message.should_close
        length = self.headers.get("Content-Length")
        self.content_length = int(length) if length is not None and length.isdigit() else None

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "application/octet-stream").partition(";")[0].strip().lower()

    async def read(self) -> bytes:
        content = self.content
        if content.is_eof() and content.exception() is None:
            return content.read_nowait()  # whole already (a small answer): no coroutines to wait on
        return await content.read()

    def pass_through(self, sink: Callable[[bytes], bool]) -> asyncio.Future[int] | None:
        """Hand the rest of this body (its length must be known) straight to `sink` as it arrives,
        past the parser and the StreamReader (two copies fewer per byte). `sink` returns True while
        it wants no more for now; `resume()` then lets the upstream socket be read again. The
        future gives the body bytes passed. None when this answer cannot take that path."""
        conn = self._conn
        if conn is None or self.content_length is None:
            return None
        return conn.pass_through(self.content, self.content_length, sink)

    def resume(self) -> None:
        if self._conn is not None:
            self._conn.hold(False)

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._conn.transport if self._conn is not None else None

    def pipe(self, target: asyncio.Transport, done: asyncio.Future[None]) -> Callable[[], int]:
        """After a 101: every byte the api-server sends goes to `target` until either side closes
        (`done`). Returns a function giving the bytes piped so far."""
        assert self._conn is not None and self.status == 101
        return self._conn.become_pipe(target, done)

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finish(keep=not self.should_close and self.content.is_eof())

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.finish(keep=False)


class Owner(Protocol):
    """What a connection tells the pool it belongs to (guard.http.pool)."""

    def watch(self, conn: Connection) -> None: ...

    def forget(self, conn: Connection) -> None: ...

    def give_back(self, conn: Connection) -> None: ...


class Connection(BaseProtocol):
    """One keep-alive connection; carries one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: Owner) -> None:
        super().__init__(loop)
        self.pool = pool
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.received = False
        self._waiter: asyncio.Future[Response] | None = None
        self._payload: StreamReader | None = None
        self._spare: Any = None
        self._spare_ok = False
        self._read_timeout = 0.0
        """Seconds the api-server may stay silent during the current exchange (0: no limit)."""
        self._last_read = 0.0
        self._passing: _Passing | None = None
        self._held = False
        self._upgraded = False
        """A 101 arrived: what follows is not HTTP and goes to `_pipe` (kept in `_tail` till then)."""
        self._tail = b""
        self._pipe: Callable[[bytes], None] | None = None
        self._pipe_done: asyncio.Future[None] | None = None
        self._piped = 0

    def begin(self, method: str, read_timeout: float | None) -> asyncio.Future[Response]:
        loop = self._loop
        spare, self._spare = self._spare, None
        # llhttp carries on across keep-alive answers; a fresh parser is only needed for HEAD.
        self._parser = spare if spare is not None and method != "HEAD" else HttpResponseParser(
            self, loop, READ_LIMIT, response_with_body=method != "HEAD", auto_decompress=False,
            max_line_size=MAX_LINE, max_field_size=MAX_LINE)
        self._spare_ok = method != "HEAD"
        self.received = False
        self._payload = None
        self._waiter = waiter = loop.create_future()
        if read_timeout:
            self._read_timeout = read_timeout
            self._last_read = loop.time()
            self.pool.watch(self)
        return waiter

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self._read_timeout:
            self._last_read = self._loop.time()
        if self._passing is not None:
            self._pass(self._passing, data)
            return
        if self._upgraded:
            if self._pipe is not None:
                self._pipe(data)
            else:
                self._tail += data  # the tunnel is being set up
            return
        parser = self._parser
        if parser is None:
            if data:  # bytes nobody asked for: the connection is out of step
                self._abort()
            return
        try:
            messages, upgraded, tail = parser.feed_data(data)
        except Exception as e:  # llhttp's errors: the answer is not HTTP we can relay
            self._fail(BadResponse(f"invalid HTTP from the api-server: {type(e).__name__}"))
            self._abort()
            return
        for message, payload in messages:
            if 100 <= message.code < 200 and message.code != 101:
                continue  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            waiter = self._waiter
            if waiter is None or waiter.done():
                self._abort()
                return
            self._payload = payload
            waiter.set_result(Response(self, message, payload))
        if upgraded:
            self._upgraded, self._tail, self._parser = True, tail, None

    def become_pipe(self, target: asyncio.Transport, done: asyncio.Future[None]) -> Callable[[], int]:
        def forward(data: bytes) -> None:
            if pipe_bytes(target, data, self._pause_transport, self._resume_transport):
                self._piped += len(data)
            elif not done.done():
                done.set_result(None)
        self._pipe, self._pipe_done = forward, done
        tail, self._tail = self._tail, b""
        if tail:
            forward(tail)
        return lambda: self._piped

    def _pause_transport(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def _resume_transport(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def pass_through(self, payload: StreamReader, length: int,
                     sink: Callable[[bytes], bool]) -> asyncio.Future[int] | None:
        if self._reading_paused or payload is not self._payload or payload.exception() is not None:
            return None  # the parser may hold unparsed bytes of its own while it is paused
        done: asyncio.Future[int] = self._loop.create_future()
        passing = _Passing(length - payload.total_bytes, sink, done, payload)
        buffered = payload.read_nowait(-1)
        passing.sent = len(buffered)
        self._spare_ok = False  # the parser never saw the end of this answer: a fresh one next time
        if buffered and sink(buffered) and passing.remaining > 0:
            self.hold(True)
        if passing.remaining <= 0:
            self._passed(passing)
        else:
            self._passing = passing
        return done

    def _pass(self, passing: _Passing, data: bytes) -> None:
        if len(data) > passing.remaining:  # more than the answer: the connection is out of step
            self._passing = None
            self._abort()
            return
        passing.remaining -= len(data)
        passing.sent += len(data)
        if passing.sink(data) and passing.remaining:
            self.hold(True)
        if not passing.remaining:
            self._passing = None
            self._passed(passing)

    def _passed(self, passing: _Passing) -> None:
        passing.payload.feed_eof()  # the answer is whole: the connection may be reused
        if not passing.done.done():
            passing.done.set_result(passing.sent)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles what was pending

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self._stop_timing()
        parser, self._parser = self._parser, None
        if parser is not None:
            try:
                parser.feed_eof()  # completes an answer delimited by the end of the connection
            except Exception as e:
                self._fail(aiohttp.ClientPayloadError(f"response body is not complete: {type(e).__name__}"))
        self._fail(ConnectionBroken("the api-server closed the connection", received=self.received))
        if self._pipe_done is not None and not self._pipe_done.done():
            self._pipe_done.set_result(None)
        self.pool.forget(self)
        super().connection_lost(exc)

    def _fail(self, error: Exception) -> None:
        passing, self._passing = self._passing, None
        if passing is not None and not passing.done.done():
            passing.done.set_exception(aiohttp.ClientPayloadError(f"response body is not complete: {error}"))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
            return
        payload = self._payload
        if payload is not None and not payload.is_eof():
            if not isinstance(error, aiohttp.ClientError | TimeoutError):
                error = aiohttp.ClientPayloadError(str(error))
            payload.set_exception(error)

    def hold(self, held: bool) -> None:
        """Stop (or resume) reading the api-server while the client catches up."""
        self._held = held
        if self.transport is not None:
            if held:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def check_timeout(self, now: float) -> bool:
        """Fail the exchange when the api-server has been silent too long; True while still timed."""
        if not self._read_timeout:
            return False
        if self._reading_paused or self._held or now - self._last_read < self._read_timeout:
            return True  # a slow client is not a slow api-server
        self._read_timeout = 0.0
        self._fail(TimeoutError())
        self._abort()
        return False

    def _stop_timing(self) -> None:
        """The exchange is over: the pool's sweep no longer checks this connection's silence."""
        self._read_timeout = 0.0

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def finish(self, *, keep: bool) -> None:
        """The exchange is over: back to the pool when the whole answer was read, else close."""
        self._stop_timing()
        payload, self._payload = self._payload, None
        parser, self._parser = self._parser, None
        self._waiter = None
        self._passing = None
        if keep and not self.closed and self.transport is not None and not self._reading_paused \
                and not self._held and not self._upgraded:
            self._spare = parser if self._spare_ok else None
            self.pool.give_back(self)
            return
        self._abort()
        if payload is not None and not payload.is_eof():  # whoever still reads it must stop now
            payload.set_exception(aiohttp.ClientConnectionError("guard closed the upstream connection"))

    async def send_stream(self, head: bytes, body: AsyncIterator[bytes], *, chunked: bool) -> None:
        """Write a streamed request body, waiting while the socket's buffer is full."""
        transport = self.transport
        assert transport is not None
        transport.write(head)
        async for chunk in body:
            if not chunk:
                continue
            if chunked:
                transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                transport.write(chunk)
            await self._drain_helper()
        if chunked:
            transport.write(b"0\r\n\r\n")


class _Passing:
    """A body on its way to a sink past the parser: how much is left, how much went."""

    __slots__ = ("done", "payload", "remaining", "sent", "sink")

    def __init__(self, remaining: int, sink: Callable[[bytes], bool], done: asyncio.Future[int],
                 payload: StreamReader) -> None:
        self.remaining = remaining
        self.sink = sink
        self.done = done
        self.payload = payload
        self.sent = 0
