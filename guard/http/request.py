"""One client request as the request path sees it, and the way to answer it: whole (`send`), as a
streamed body (`stream`), from a callback (`write_now`), or by leaving HTTP for a byte pipe
(`pipe`). It knows its connection only through `Link`, what guard.http.connection provides.

`keep_alive` says whether the connection can serve another request after this answer: the client
allows it, and the body has arrived or what is left of it is small enough to read and drop
(`DRAIN_BODY`); the first head written fixes it (`closes`), so an answer that ends the connection
always says `Connection: close`. It must never log a header or a body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp.http_writer import HttpVersion10
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from multidict import CIMultiDictProxy, MultiDictProxy
from yarl import URL

from guard.kube.errors import GuardError

DRAIN_ABOVE = 512 * 1024
"""Bytes queued towards the client above which a writer waits for the client to read."""
DRAIN_BODY = 64 * 1024
"""Most bytes of a refused request's body still to come that guard reads and drops to keep the
connection; with more to come (or an unknown length) the refusal says `Connection: close`."""


class BodyTimeout(GuardError):
    """The request body did not arrive whole within `limits.bodyTimeout` of its head."""

    code = 408
    reason = "Timeout"


class Link(Protocol):
    """What a request needs of the connection it came on."""

    remote: str
    on_writable: Callable[[], None] | None

    @property
    def transport(self) -> asyncio.Transport | None: ...

    @property
    def writing_paused(self) -> bool: ...

    async def drain(self) -> None: ...

    def write(self, data: bytes) -> None: ...

    def writelines(self, chunks: tuple[bytes, ...]) -> None: ...

    def become_pipe(self, target: asyncio.Transport, done: asyncio.Future[None],
                    delivered: Callable[[], int]) -> Callable[[], int]: ...


class Request:
    """One parsed client request, and the way to answer it."""

    __slots__ = ("_conn", "_continued", "_keep_alive", "_url", "answered", "closes", "content", "headers",
                 "method", "raw_path", "remote", "version")

    def __init__(self, conn: Link, message: Any, payload: StreamReader) -> None:
        self._conn = conn
        self.method: str = message.method
        self.raw_path: str = message.path
        """The request target exactly as the client sent it (path and query, still encoded)."""
        self._url = message.url
        self.headers: CIMultiDictProxy[str] = message.headers
        self.version = message.version
        self._keep_alive: bool = not message.should_close and message.version != HttpVersion10
        self.content = payload
        self.remote = conn.remote
        self.answered = False
        """True once the status line has been written: an error can then only abort."""
        self.closes = False
        """The answer said `Connection: close` (fixed when its head was written)."""
        self._continued = False

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may serve another request after this answer: the client allows
        it, and the body has arrived, or what is left is at most DRAIN_BODY bytes of a known
        length that the client is sending (not waiting on `100 Continue`)."""
        if not self._keep_alive:
            return False
        content = self.content
        if content.exception() is not None:
            return False
        if content is EMPTY_PAYLOAD or content.is_eof():
            return True
        length = self.content_length
        if length is None or length - content.total_bytes > DRAIN_BODY:
            return False
        return self._continued or self.headers.get("Expect", "").lower() != "100-continue"

    @keep_alive.setter
    def keep_alive(self, value: bool) -> None:
        self._keep_alive = self._keep_alive and value

    def retarget(self, target: str) -> None:
        """Serve this request as one for `target` (still encoded): guard.routing strips the
        `/clusters/{name}` prefix before anything reads the path."""
        path, _, query = target.partition("?")
        self.raw_path = target
        self._url = URL.build(path=path, query_string=query, encoded=True)

    @property
    def path(self) -> str:
        """The decoded path, as the api-server's request-info factory sees it."""
        return str(self._url.path)

    @property
    def query(self) -> MultiDictProxy[str]:
        return self._url.query  # type: ignore[no-any-return]

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._conn.transport

    @property
    def body_exists(self) -> bool:
        return self.content is not EMPTY_PAYLOAD

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    async def read(self) -> bytes:
        return await self.content.read()

    def peer_certificate(self) -> bytes | None:
        """The client certificate the TLS layer verified against the client CA, as DER."""
        transport = self._conn.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None

    async def send(self, data: bytes) -> None:
        """Write a whole answer (status line, headers, body) and wait while the client lags."""
        if not self.answered:
            self.answered = True
            self.closes = not self.keep_alive  # what the head just built from it said
        conn = self._conn
        transport = conn.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client went away")
        conn.write(data)
        if transport.get_write_buffer_size() > DRAIN_ABOVE:
            await conn.drain()

    async def stream(self, head: bytes, *, chunked: bool) -> Stream:
        """Write the head of an answer whose body follows in pieces (`chunked` frames them)."""
        await self.send(head)
        return Stream(self._conn, chunked)

    def write_now(self, data: bytes) -> bool:
        """Write body bytes from a callback (no await). True when the client lags: the caller should
        stop feeding until `on_writable`'s callback runs."""
        transport = self._conn.transport
        if transport is None or transport.is_closing():
            return False  # the handler is being cancelled; what follows is dropped
        self._conn.write(data)
        return self._conn.writing_paused

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` each time the client has read its backlog (None: stop)."""
        self._conn.on_writable = callback

    def continue_(self) -> None:
        """Tell a client waiting on `Expect: 100-continue` to send its body (once, HTTP/1.1 only)."""
        if self.answered or self.version == HttpVersion10:
            return
        expect = self.headers.get("Expect")
        transport = self._conn.transport
        if expect is not None and expect.lower() == "100-continue" and transport is not None \
                and not transport.is_closing():
            self._continued = True
            self._conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def pipe(self, target: asyncio.Transport, done: asyncio.Future[None],
             delivered: Callable[[], int]) -> Callable[[], int]:
        """After a 101: every byte the client sends goes to `target` until either side closes;
        `delivered` gives the bytes the tunnel wrote towards the client (a client that takes none
        for `writeTimeout` is cut). Returns a function giving the bytes piped so far."""
        self.keep_alive = False
        return self._conn.become_pipe(target, done, delivered)


class Stream:
    """The body of a streamed answer: chunk framing when asked, flow control towards the client."""

    __slots__ = ("_chunked", "_conn")

    def __init__(self, conn: Link, chunked: bool) -> None:
        self._conn = conn
        self._chunked = chunked

    async def write(self, chunk: bytes) -> None:
        transport = self._conn.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client went away")
        if self._chunked:
            self._conn.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
        else:
            self._conn.write(chunk)
        if transport.get_write_buffer_size() > DRAIN_ABOVE:
            await self._conn.drain()

    async def end(self) -> None:
        if self._chunked:
            transport = self._conn.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("the client went away")
            self._conn.write(b"0\r\n\r\n")
