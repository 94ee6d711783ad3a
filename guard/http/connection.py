"""One client connection of the main listener: TLS after accept (guard.http.handshake), requests
parsed by llhttp and served in order, keep-alive, a byte pipe after an upgrade (guard.http.tunnel),
and what the server's sweep checks (`sweep`: idle, the body deadline, a write stall).

An answer sent while the body is still arriving (a refusal) keeps the connection only when what is
left is small enough to read and drop (`Request.keep_alive`); otherwise it says `Connection: close`
and the connection drops what still comes until the client closes: no client meets a silent close.
Its callbacks are one state machine, kept in one module although it runs past 300 lines. This
module must never log a header or a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader

from guard.http import answers
from guard.http.clocks import BodyClock, StallClock, reset, unsent
from guard.http.h2connection import H2Session
from guard.http.handshake import Handshake
from guard.http.pipes import pipe_bytes
from guard.http.request import DRAIN_ABOVE, BodyTimeout, Request
from guard.kube.errors import BadRequest, GuardError, HeaderTooLarge

if TYPE_CHECKING:
    from guard.http.server import Server

log = logging.getLogger(__name__)
MAX_PIPELINED = 16
"""Parsed requests waiting behind the one being served before reading the socket pauses."""


class Connection(BaseProtocol):
    """One client connection: handshake, parse, serve requests in order, keep alive, pipe."""

    __slots__ = ("__weakref__", "_body", "_closing", "_delivered", "_gone", "_h2", "_handshake",
                 "_linger_until", "_pipe_done", "_pipe_target", "_piped", "_queue", "_server", "_socket",
                 "_stall", "_tail", "_task", "idle_since", "on_writable", "remote", "sent")

    def __init__(self, server: Server) -> None:
        super().__init__(server.loop)
        self._server = server
        self.remote = ""
        self.idle_since: float | None = None
        self.on_writable: Callable[[], None] | None = None
        self.sent = 0
        """Bytes guard handed to the transport (its buffer holds what the client has not taken)."""
        self._queue: deque[tuple[Any, StreamReader]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._handshake: Handshake | None = None
        """The TLS handshake, until it is done."""
        self._closing = False
        self._gone = False
        self._body: BodyClock | None = None
        self._stall = StallClock()
        self._socket: Any = None
        self._pipe_target: asyncio.Transport | None = None
        self._pipe_done: asyncio.Future[None] | None = None
        self._piped = 0
        self._delivered: Callable[[], int] | None = None
        """After an upgrade: bytes the tunnel wrote towards the client (guard.http.tunnel)."""
        self._tail = b""
        self._linger_until: float | None = None
        """Set while dropping the rest of a body after a closing answer (`_linger`)."""
        self._h2: H2Session | None = None
        """Set when the client chose HTTP/2 (ALPN h2): it serves the streams, this the connection."""

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Plain HTTP: just accepted, counted here. TLS: the handshake is done (`secure` counted it)."""
        super().connection_made(transport)
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses
        if self._handshake is None:
            self.remote = _address(transport.get_extra_info("peername"))
            if not self._server.admit(self):
                self._gone = True
                self.transport = None
                transport.abort()
                return
        self._handshake = None
        transport.set_write_buffer_limits(high=DRAIN_ABOVE)
        self._socket = transport.get_extra_info("socket")
        self.idle_since = self._loop.time()
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            self._server.stats.http2 += 1
            self._h2 = H2Session(self, self._server)
            return
        self._parser = self._server.new_parser(self)

    def secure(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        """Start TLS on a socket the server accepted and counted; `connection_made` follows."""
        try:
            self.remote = _address(sock.getpeername())
        except OSError:  # already gone
            self.remote = ""
        self.idle_since = self._loop.time()
        self._handshake = Handshake(sock, context, self._server.limits.handshake_timeout, lambda: self,
                                    self._handshake_over)

    def _handshake_over(self, failed: bool) -> None:
        """The handshake ended without a connection: it `failed` (too slow, reset, not TLS), or
        guard cancelled it, or the socket went away under it."""
        if failed:
            self._server.stats.handshakes_failed += 1
        self._lost()

    def data_received(self, data: bytes) -> None:
        if self._h2 is not None:
            if not self._closing:
                self._h2.data_received(data)
            return
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
        if messages and messages[-1][1] is not EMPTY_PAYLOAD and not messages[-1][1].is_eof():
            self._body = BodyClock(messages[-1][1], self._loop.time() + self._server.limits.body_timeout)
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
        self._lost()
        super().connection_lost(exc)

    def _lost(self) -> None:
        """The connection is gone (closed, reset, evicted, or its handshake failed): stop everything
        it started. Runs once, whichever way the end was noticed first."""
        if self._gone:
            return
        self._gone = self._closing = True
        self._server.gone(self)
        if self._h2 is not None:
            self._h2.lost()
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

    # -- serving

    def _next(self) -> None:
        message, payload = self._queue.popleft()
        if self._buffer_paused and len(self._queue) <= MAX_PIPELINED:
            self._resume_reading_for_buffer()
        self.idle_since = None
        self._server.busy(self)
        request = Request(self, message, payload)
        self._task = self._loop.create_task(self._serve(request))

    async def _serve(self, request: Request) -> None:
        try:
            await self._server.handler(request)
            if not request.answered:
                log.error("no answer for %s %s; answering 500", request.method, request.path)
                request.keep_alive = False
                with contextlib.suppress(ConnectionResetError):
                    await request.send(answers.status(GuardError("internal error in guard"), close=True))
            whole = await self._rest_of_body(request)
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
        self._after(request, whole)

    async def _rest_of_body(self, request: Request) -> bool:
        """Whether the request's body has arrived whole. After a kept-alive answer to a request whose
        small body was still arriving (a refusal), read the rest and drop it, bounded by its bytes
        (`Request.keep_alive`) and by the body deadline the sweep enforces."""
        content = request.content
        if content is EMPTY_PAYLOAD or content.is_eof():
            return content.exception() is None
        if request.closes or self._pipe_target is not None or self._server.closing:
            return False
        self._server.spare(self, fresh=True)  # worth nothing while it drains: first to go under pressure
        try:
            while not content.is_eof():
                await content.readany()
        except (BodyTimeout, ConnectionError):
            return False
        return True

    def _after(self, request: Request, whole: bool) -> None:
        """Keep the connection for the next request, or close it."""
        if self._pipe_target is not None:
            return  # the pipe owns the socket now
        if not whole and self._body is not None and self._body.payload is request.content \
                and not self._server.closing:
            self._linger(self._body.deadline)
            return
        if request.closes or not whole or self._server.closing:
            self._close()
            return
        if self._queue:
            self._next()
        else:
            self.idle_since = self._loop.time()
            self._server.spare(self, fresh=False)

    def _linger(self, until: float) -> None:
        """After an answer that said `Connection: close` while the client is still sending its body:
        drop what it sends until it closes or its body deadline passes. Closing at once would make
        the client's kernel meet a reset, which throws away the answer it has not read yet
        (nginx's lingering close)."""
        self._parser, self._body, self._linger_until = None, None, until
        self._reading_paused = self._buffer_paused = False  # the dropped body's flow control
        self._resume_transport_reading()
        self._server.spare(self, fresh=True)
        transport = self.transport
        if transport is not None and transport.can_write_eof():
            transport.write_eof()  # the client learns at once that nothing more will come

    def _refuse(self, error: HttpProcessingError) -> None:
        """A request llhttp cannot parse: a Status, then close (the byte stream is out of step)."""
        self._closing = True
        self._parser = None
        if self._task is None and self.transport is not None:
            refusal = HeaderTooLarge("a request line or header is too long") if isinstance(
                error, LineTooLong) else BadRequest("the request is not valid HTTP/1.1")
            self.write(answers.status(refusal, close=True))
            self._close()
        else:
            self._abort()

    def write(self, data: bytes) -> None:
        """Queue bytes for the client (every answer byte goes through here, so stalls are seen)."""
        assert self.transport is not None
        self.sent += len(data)
        self.transport.write(data)

    def writelines(self, chunks: tuple[bytes, ...]) -> None:
        assert self.transport is not None
        self.sent += sum(map(len, chunks))
        self.transport.writelines(chunks)

    # -- what an HTTP/2 session asks of its connection

    def close(self) -> None:
        """Close after what is queued has gone out."""
        if not self._closing:
            self._close()

    def busy(self) -> None:
        """Streams are open: not idle, never evicted."""
        self.idle_since = None
        self._server.busy(self)

    def spare(self) -> None:
        """No stream open: idle from now."""
        self.idle_since = self._loop.time()
        self._server.spare(self, fresh=False)

    def _close(self) -> None:
        self._closing = True
        self._server.spare(self, fresh=True)  # until the transport is gone (a TLS shutdown may wait)
        if self._handshake is not None:
            self._handshake.cancel()
        elif self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        self._closing = True
        if self._handshake is not None:
            self._handshake.cancel()
        elif self.transport is not None:
            self.transport.abort()

    def evict(self) -> None:
        """Make room for a new connection (the server chose this one as the least useful)."""
        self._abort()
        self._lost()

    # -- the sweep

    def sweep(self, now: float) -> None:
        """The server's periodic look: close when idle too long, enforce the body deadline, cut a
        client that takes no byte for `writeTimeout`."""
        server = self._server
        if self.close_if_idle(now, server.limits.idle_timeout):
            server.stats.idle_closed += 1
            return
        if self._linger_until is not None and now >= self._linger_until:
            self._abort()
            return
        if self._body is not None:
            self._check_body(now)
        if self._h2 is not None:
            self._h2.sweep(now)
        transport = self.transport
        if transport is not None and self._handshake is None:
            self._check_stall(now, transport)

    def _check_body(self, now: float) -> None:
        assert self._body is not None
        overdue = self._body.overdue(now)
        if overdue is None:
            self._body = None
        elif overdue:
            payload, self._body = self._body.payload, None
            self._server.stats.body_timeouts += 1
            payload.set_exception(BodyTimeout(
                f"the request body did not arrive within {self._server.limits.body_timeout:g}s"))

    def _check_stall(self, now: float, transport: asyncio.Transport) -> None:
        sent = self.sent + (self._delivered() if self._delivered is not None else 0)
        waiting = transport.get_write_buffer_size() + unsent(self._socket)
        if self._stall.stalled_for(now, sent, waiting) >= self._server.limits.write_timeout:
            self._server.stats.write_timeouts += 1
            reset(self._socket)  # what waits in the kernel would wait for it too: drop it
            self._abort()  # connection_lost cancels the handler: seat, upstream and slot go back

    def close_if_idle(self, now: float, timeout: float) -> bool:
        """Close when nothing is being served and nothing has been for `timeout` seconds (a
        handshake or a head still arriving included); True when closed."""
        if self._h2 is not None:
            return not self._closing and self._h2.close_if_idle(now, timeout, self.idle_since)
        if self._task is None and self._pipe_target is None and self.idle_since is not None and (
                now - self.idle_since >= timeout) and not self._closing:
            self._close()
            return True
        return False

    async def drain(self) -> None:
        await self._drain_helper()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._h2 is not None:
            self._h2.pump(0)
        if self.on_writable is not None:
            self.on_writable()

    # -- upgrade

    def become_pipe(self, target: asyncio.Transport, done: asyncio.Future[None],
                    delivered: Callable[[], int]) -> Callable[[], int]:
        self._pipe_target, self._pipe_done, self._delivered = target, done, delivered
        self._server.busy(self)
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


def _address(peer: object) -> str:
    return str(peer[0]) if isinstance(peer, tuple) else ""
