"""The main listener's HTTP/1.1 server: guard's own asyncio protocol around aiohttp's C request parser.

aiohttp's `web.Server` costs more per request than the rest of guard's request path: a task per
connection plus one per request, a `BaseRequest`, a `StreamResponse` and its payload writer. This
server keeps what a proxy needs and nothing else: one task per request, a small `Request`, answers
written as bytes (`guard.http.answers` serialises them), and body streams with flow control both ways.

What it does, per connection: parse requests with llhttp (aiohttp's `HttpRequestParser`: header and
line limits, chunked bodies, pipelining), serve them one after another, keep the connection alive
unless the client or the answer says otherwise, close connections idle longer than `idle_timeout`,
cancel the handler when the client goes away (so an abandoned watch frees its upstream at once),
refuse connections beyond `max_connections`, answer a request it cannot parse with a 400/431
Status and close, and hand the socket over to a byte pipe after an upgrade (guard.http.tunnel).
The handler must answer through the `Request` (`send`, `stream`, `pipe`); a handler that returns
without answering gets a 500 Status, one that raises gets its connection aborted. This module must
never log a header or a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.http_parser import HttpRequestParser
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader

from guard.http import answers
from guard.http.pipes import pipe_bytes
from guard.http.request import DRAIN_ABOVE, Request
from guard.kube.errors import BadRequest, GuardError, HeaderTooLarge

log = logging.getLogger(__name__)
READ_LIMIT = 64 * 1024
"""Request body StreamReader low-water mark: above twice this, reading the client socket pauses."""
MAX_PIPELINED = 16
"""Parsed requests waiting behind the one being served before reading the socket pauses."""
SWEEP_EVERY = 1.0
"""Seconds between two passes closing idle keep-alive connections."""

Handler = Callable[[Request], Awaitable[None]]


class Connection(BaseProtocol):
    """One client connection: parse, serve requests in order, keep alive, pipe after an upgrade."""

    def __init__(self, server: Server) -> None:
        super().__init__(server.loop)
        self._server = server
        self.remote = ""
        self.idle_since: float | None = None
        self._queue: deque[tuple[Any, StreamReader]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._pipe_target: asyncio.Transport | None = None
        self._pipe_done: asyncio.Future[None] | None = None
        self._piped = 0
        self._tail = b""
        self.on_writable: Callable[[], None] | None = None

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self._server
        server.connections.add(self)
        if len(server.connections) > server.max_connections or server.closing:
            self.transport = None
            transport.abort()  # type: ignore[attr-defined]
            return
        transport.set_write_buffer_limits(high=DRAIN_ABOVE)  # type: ignore[attr-defined]
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, tuple) else ""
        self._parser = server.new_parser(self)
        self.idle_since = self._loop.time()

    def data_received(self, data: bytes) -> None:
        target = self._pipe_target
        if target is not None:
            self._pipe(target, data)
            return
        parser = self._parser
        if parser is None or self._closing:
            return
        try:
            messages, upgraded, tail = parser.feed_data(data)
        except HttpProcessingError as e:
            self._refuse(e)
            return
        for message, payload in messages:
            self._queue.append((message, payload))
        if upgraded:
            self._tail = tail
            self._upgraded = True
            self._parser = None  # what follows the upgrade request is not HTTP any more
        if self._queue and self._task is None:
            self._next()
        if len(self._queue) > MAX_PIPELINED and self.transport is not None:
            self._pause_reading_for_buffer()

    def eof_received(self) -> bool:
        parser = self._parser
        if parser is not None and self._pipe_target is None:
            with contextlib.suppress(HttpProcessingError):
                parser.feed_eof()
        if self._pipe_done is not None and not self._pipe_done.done():
            self._pipe_done.set_result(None)
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._server.connections.discard(self)
        self._closing = True
        self._upgraded = True  # no parser any more: flow control must not try to pause one
        parser, self._parser = self._parser, None
        if parser is not None:
            with contextlib.suppress(Exception):
                parser.feed_eof()
        for _, payload in self._queue:
            payload.feed_eof()
        self._queue.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the client left: its handler (an idle watch, say) stops now
        if self._pipe_done is not None and not self._pipe_done.done():
            self._pipe_done.set_result(None)
        super().connection_lost(exc)

    # -- serving

    def _next(self) -> None:
        message, payload = self._queue.popleft()
        if self._buffer_paused and len(self._queue) <= MAX_PIPELINED:
            self._resume_reading_for_buffer()
        self.idle_since = None
        request = Request(self, message, payload)
        self._task = self._loop.create_task(self._serve(request))

    async def _serve(self, request: Request) -> None:
        try:
            await self._server.handler(request)
        except asyncio.CancelledError:
            self._abort()
            raise
        except Exception:
            # A handler raises only when nothing more can be said (the client left, or an answer broke
            # after its head went out): the client must not take a truncated answer for a whole one.
            self._abort()
            return
        finally:
            self._task = None
        if not request.answered:
            log.error("no answer for %s %s; answering 500", request.method, request.path)
            with contextlib.suppress(ConnectionResetError):
                await request.send(answers.status(GuardError("internal error in guard"), close=True))
            request.keep_alive = False
        self._after(request)

    def _after(self, request: Request) -> None:
        """Keep the connection for the next request, or close it."""
        if self._pipe_target is not None:
            return  # the pipe owns the socket now
        whole = request.content is EMPTY_PAYLOAD or request.content.is_eof()
        if not (request.keep_alive and whole) or self._server.closing:
            self._close()
            return
        if self._queue:
            self._next()
        else:
            self.idle_since = self._loop.time()

    def _refuse(self, error: HttpProcessingError) -> None:
        """A request llhttp cannot parse: a Status, then close (the byte stream is out of step)."""
        self._closing = True
        self._parser = None
        if self._task is None and self.transport is not None:
            refusal = HeaderTooLarge("a request line or header is too long") if isinstance(
                error, LineTooLong) else BadRequest("the request is not valid HTTP/1.1")
            self.transport.write(answers.status(refusal, close=True))
            self._close()
        else:
            self._abort()

    def _close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def close_if_idle(self, now: float, timeout: float) -> None:
        if self._task is None and self._pipe_target is None and self.idle_since is not None and (
                now - self.idle_since >= timeout or self._server.closing):
            self._close()

    async def drain(self) -> None:
        await self._drain_helper()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.on_writable is not None:
            self.on_writable()

    # -- upgrade

    def become_pipe(self, target: asyncio.Transport, done: asyncio.Future[None]) -> Callable[[], int]:
        self._pipe_target, self._pipe_done = target, done
        tail, self._tail = self._tail, b""
        if tail:
            self._pipe(target, tail)
        return lambda: self._piped

    def _pipe(self, target: asyncio.Transport, data: bytes) -> None:
        if not pipe_bytes(target, data, self._pause_reading_for_buffer, self._resume_piping):
            if self._pipe_done is not None and not self._pipe_done.done():
                self._pipe_done.set_result(None)
            return
        self._piped += len(data)

    def _resume_piping(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._resume_reading_for_buffer()


class Server:
    """The protocol factory for `loop.create_server`, and the connections it made."""

    def __init__(self, handler: Handler, *, idle_timeout: float, max_connections: int,
                 max_line: int) -> None:
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_line = max_line
        self.connections: set[Connection] = set()
        self.closing = False
        self.loop = asyncio.get_running_loop()
        self._sweeper = self.loop.create_task(self._sweep())

    def __call__(self) -> Connection:
        return Connection(self)

    def new_parser(self, conn: Connection) -> HttpRequestParser:
        return HttpRequestParser(conn, self.loop, READ_LIMIT, max_line_size=self.max_line,
                                 max_field_size=self.max_line, max_headers=256, auto_decompress=False)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            now = self.loop.time()
            for conn in list(self.connections):
                conn.close_if_idle(now, self.idle_timeout)

    async def shutdown(self, timeout: float) -> None:
        """Close idle connections now, let busy ones finish for `timeout` seconds, then abort them."""
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
            conn._abort()
        self._sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper
