"""One HTTP/2 stream as the request path sees it: the same `Request` the HTTP/1.1 path hands to the
pipeline (identity, classification, admission, fair queuing and forwarding are shared, not copied),
answering through HEADERS and DATA frames instead of bytes on a socket.

guard's answers are built as HTTP/1.1 heads (guard.http.answers); `H2Request` turns each head into
an HTTP/2 header list (`h2_headers`: the status, the fields, none of HTTP/1.1's connection-specific
ones) and writes bodies unframed. Flow control runs both ways: a body is handed to the connection
only as far as the stream's and the connection's windows allow (`H2Stream.push`), and a writer
waits, or a callback writer is told to pause, until the client opens its window again; so guard
never reads more of an upstream answer than one window ahead of what the client takes. A request
body is acknowledged to the client (WINDOW_UPDATE) only as the request path reads it.

It knows its connection only through `Session`, what guard.http.h2connection provides. It must
never log a header or a body. It runs past 300 lines because the request view and the two flow-control
directions share one stream's windows and are read together.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Protocol

from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_writer import HttpVersion
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from guard.http.request import Request

HTTP2 = HttpVersion(2, 0)
BODY_BUFFER = 64 * 1024
"""A request body's read buffer low-water mark: above twice this, its window stops being reopened."""
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                 b"upgrade"})
"""HTTP/1.1 fields HTTP/2 forbids (RFC 9113 8.2.2): guard's own `Connection: close` and
`Transfer-Encoding: chunked` never go out on a stream."""


class Session(Protocol):
    """What a stream needs of its HTTP/2 connection."""

    remote: str

    @property
    def transport(self) -> asyncio.Transport | None: ...

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], *, end: bool) -> None: ...

    def send_data(self, stream_id: int, data: memoryview) -> int: ...

    def end_stream(self, stream_id: int) -> None: ...

    def acknowledge(self, stream_id: int, size: int) -> None: ...

    @property
    def writing_paused(self) -> bool: ...


def h2_headers(head: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """An HTTP/1.1 answer built by guard.http.answers as an HTTP/2 header list, and what followed
    its head (the body of a whole answer)."""
    end = head.index(b"\r\n\r\n")
    lines = head[:end].split(b"\r\n")
    out = [(b":status", lines[0].split(b" ", 2)[1])]
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name not in CONNECTION_SPECIFIC:
            out.append((name, value.strip()))
    return out, head[end + 4:]


class BodyFlow(BaseProtocol):
    """The request body's flow control: the StreamReader pauses and resumes it as the request path
    reads; paused, received bytes are acknowledged only when it resumes."""

    __slots__ = ("_stream",)

    def __init__(self, loop: asyncio.AbstractEventLoop, stream: H2Stream) -> None:
        super().__init__(loop)
        self._stream = stream

    @property
    def connected(self) -> bool:
        return not self._stream.closed

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self, resume_parser: bool = True) -> None:
        self._reading_paused = False
        self._stream.acknowledge()


class H2Stream:
    """One stream's state on guard's side: its request body, and what waits to be sent."""

    __slots__ = ("_ended", "_loop", "_pending", "_session", "_unacked", "_waiter", "blocked_since", "closed",
                 "end_asked", "flow", "id", "lagging", "on_writable", "payload", "remote", "task")

    def __init__(self, session: Session, stream_id: int, *, with_body: bool) -> None:
        loop = asyncio.get_running_loop()
        self._session = session
        self._loop = loop
        self.id = stream_id
        self.remote = session.remote
        self.closed = False
        """Reset (by either side) or finished: nothing more goes out."""
        self._pending: deque[memoryview] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.end_asked = False
        self._ended = False
        self.lagging = False
        """A callback writer was told to pause (`write_now` returned True)."""
        self.on_writable: Callable[[], None] | None = None
        self.blocked_since: float | None = None
        """Since when output has waited on the client's window without a byte taken (the sweep resets a
        stream stalled for writeTimeout)."""
        self._unacked = 0
        self.flow = BodyFlow(loop, self)
        self.payload: StreamReader = StreamReader(self.flow, BODY_BUFFER, loop=loop) if with_body \
            else EMPTY_PAYLOAD
        self.task: asyncio.Task[None] | None = None

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._session.transport

    # -- the request body

    def received(self, data: bytes, flow_controlled: int) -> None:
        if self.payload is EMPTY_PAYLOAD or self.payload.is_eof():
            return
        self.payload.feed_data(data)
        self._unacked += flow_controlled
        if not self.flow._reading_paused:
            self.acknowledge()

    def acknowledge(self) -> None:
        """Give the client back the window of what was read (the connection's, once the stream is over)."""
        if self._unacked:
            self._session.acknowledge(self.id, self._unacked)
        self._unacked = 0

    @property
    def body_pending(self) -> bool:
        """The client is still sending the request body."""
        return self.payload is not EMPTY_PAYLOAD and not self.payload.is_eof()

    # -- the answer

    def send_head(self, headers: list[tuple[bytes, bytes]], *, end: bool) -> None:
        """HEADERS; `end`: nothing follows (the stream ends with them)."""
        if self.closed:
            raise ConnectionResetError("the client reset the stream")
        self._session.send_headers(self.id, headers, end=end)
        if end:
            self.end_asked = self._ended = True

    @property
    def idle(self) -> bool:
        """Everything asked has been sent, the end of the stream included."""
        return not self._pending and (self._ended or not self.end_asked)

    def queue(self, data: bytes) -> bool:
        """Queue body bytes and send what the windows allow; True while some wait."""
        if self.closed:
            raise ConnectionResetError("the client reset the stream")
        if data:
            self._pending.append(memoryview(data))
        self.push()
        return bool(self._pending)

    async def write(self, data: bytes) -> None:
        """Send body bytes; returns once the connection has taken all of them."""
        if self.queue(data) or self._session.writing_paused:
            await self._wait()

    async def end(self) -> None:
        self.end_asked = True
        self.push()
        if not self.idle:
            await self._wait()

    def write_now(self, data: bytes) -> bool:
        """Send from a callback; True: the client lags, stop feeding until `on_writable`."""
        if self.closed:
            return False
        waiting = self.queue(data) or self._session.writing_paused
        self.lagging = self.lagging or waiting
        return waiting

    async def _wait(self) -> None:
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter
        if self.closed and self._pending:
            raise ConnectionResetError("the client reset the stream")

    def push(self) -> None:
        """Hand the connection what the windows allow (called again when they open)."""
        session = self._session
        moved = False
        while self._pending and not self.closed:
            chunk = self._pending[0]
            taken = session.send_data(self.id, chunk)
            if taken == 0:
                break
            moved = True
            if taken < len(chunk):
                self._pending[0] = chunk[taken:]
            else:
                self._pending.popleft()
        if self._pending and not self.closed:
            if moved or self.blocked_since is None:  # stalled since the client last took a byte
                self.blocked_since = self._loop.time()
            return
        if self.end_asked and not self._ended and not self.closed:
            self._ended = True
            session.end_stream(self.id)
        self.writable()

    def writable(self) -> None:
        """Nothing waits any more (or the stream is gone): wake the writer and the callback writer."""
        if session_paused(self._session) and not self.closed:
            return
        self.blocked_since = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self.lagging and self.on_writable is not None:
            self.lagging = False
            self.on_writable()

    def close(self) -> None:
        """Reset or finished: wake whoever waits (they see `closed`) and end the body."""
        self.closed = True
        self.acknowledge()
        if self.payload is not EMPTY_PAYLOAD and not self.payload.is_eof():
            self.payload.set_exception(ConnectionResetError("the client reset the stream"))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def session_paused(session: Session) -> bool:
    return session.writing_paused


class _Head:
    """A stream's request head in the shape `Request` reads (aiohttp's RawRequestMessage's names)."""

    __slots__ = ("headers", "method", "path", "should_close", "url", "version")

    def __init__(self, method: str, path: str, headers: CIMultiDictProxy[str]) -> None:
        self.method = method
        self.path = path
        target, _, query = path.partition("?")
        self.url = URL.build(path=target, query_string=query, encoded=True)
        self.headers = headers
        self.version = HTTP2
        self.should_close = False


def request_head(fields: list[tuple[bytes, bytes]]) -> _Head:
    """The head of a stream's request from its decoded header list (h2 has checked the pseudo-header
    fields): `:authority` becomes `Host`, as HTTP/1.1 clients send it."""
    method = path = ""
    headers: CIMultiDict[str] = CIMultiDict()
    for raw_name, raw_value in fields:
        name = raw_name.decode("ascii", "surrogateescape")
        value = raw_value.decode("utf-8", "surrogateescape")
        if name.startswith(":"):
            if name == ":method":
                method = value
            elif name == ":path":
                path = value
            elif name == ":authority" and "Host" not in headers:
                headers["Host"] = value
            continue
        headers.add(name, value)
    return _Head(method, path or "/", CIMultiDictProxy(headers))


class H2Request(Request):
    """A stream's request: the pipeline's `Request`, answered in frames."""

    __slots__ = ("_stream",)

    def __init__(self, stream: H2Stream, fields: list[tuple[bytes, bytes]]) -> None:
        self._stream = stream
        super().__init__(_Link(stream), request_head(fields), stream.payload)

    async def send(self, data: bytes) -> None:
        """A whole answer: HEADERS (ending the stream when no body follows), then DATA."""
        stream = self._stream
        if stream.closed:
            raise ConnectionResetError("the client reset the stream")
        if self.answered:
            await stream.write(data)
            return
        self.answered = True
        headers, body = h2_headers(data)
        stream.send_head(headers, end=not body)
        if body:
            await stream.write(body)
            await stream.end()

    async def stream(self, head: bytes, *, chunked: bool) -> H2Body:  # type: ignore[override]
        stream = self._stream
        if stream.closed:
            raise ConnectionResetError("the client reset the stream")
        self.answered = True
        headers, _ = h2_headers(head)
        stream.send_head(headers, end=False)
        return H2Body(stream)

    def write_now(self, data: bytes) -> bool:
        return self._stream.write_now(data)

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        self._stream.on_writable = callback

    def continue_(self) -> None:
        """`Expect: 100-continue`: an informational 100 before the client sends its body."""
        expect = self.headers.get("Expect")
        if not self.answered and expect is not None and expect.lower() == "100-continue" \
                and not self._stream.closed:
            self._stream.send_head([(b":status", b"100")], end=False)

    def pipe(self, target: asyncio.Transport, done: asyncio.Future[None],
             delivered: Callable[[], int]) -> Callable[[], int]:
        raise ConnectionResetError("no upgrade on an HTTP/2 stream")


class H2Body:
    """The body of a streamed answer on a stream: DATA frames, no chunk framing."""

    __slots__ = ("_stream",)

    def __init__(self, stream: H2Stream) -> None:
        self._stream = stream

    async def write(self, chunk: bytes) -> None:
        await self._stream.write(chunk)

    async def end(self) -> None:
        await self._stream.end()


class _Link:
    """The `Link` a stream's `Request` holds: the connection's transport (TLS details: the client
    certificate, the server name) and its remote address; every write goes through `H2Request`."""

    __slots__ = ("_stream", "on_writable", "remote")

    def __init__(self, stream: H2Stream) -> None:
        self._stream = stream
        self.remote = stream.remote
        self.on_writable: Callable[[], None] | None = None

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._stream.transport

    @property
    def writing_paused(self) -> bool:
        return self._stream.lagging

    async def drain(self) -> None:
        await self._stream.write(b"")

    def write(self, data: bytes) -> None:
        self._stream.queue(data)

    def writelines(self, chunks: tuple[bytes, ...]) -> None:
        self._stream.queue(b"".join(chunks))

    def become_pipe(self, target: asyncio.Transport, done: asyncio.Future[None],
                    delivered: Callable[[], int]) -> Callable[[], int]:
        raise ConnectionResetError("no upgrade on an HTTP/2 stream")
