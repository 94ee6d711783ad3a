"""SPDY/3.1 as kubectl speaks it: exec and attach of kubectl 1.27-1.29 (an HTTP upgrade to
`SPDY/3.1`, streams stdin/stdout/stderr/error/resize, protocol v4.channel.k8s.io) and
port-forward (streams error/data per connection, protocol portforward.k8s.io), raw or tunnelled in
WebSocket binary messages (kubectl 1.31+, subprotocol `SPDY/3.1+portforward.k8s.io`).

Only what those clients use is here: SYN_STREAM/SYN_REPLY, DATA with FIN, RST_STREAM, PING,
GOAWAY; SETTINGS and WINDOW_UPDATE are read and ignored (the clients do not enforce flow control).
Header blocks are zlib streams primed with the SPDY/3 dictionary. It must never run a process or
open a socket: exec goes to `chaos.sim.shell`, connections to `chaos.sim.portforward`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from chaos.sim import portforward

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FIN = 0x01
EXEC_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
PORT_FORWARD = "portforward.k8s.io"
_TOKENS = (  # noqa: SIM905 - the spec lists them as one run of words
    "options,head,post,put,delete,trace,accept,accept-charset,accept-encoding,accept-language,"
    "accept-ranges,age,allow,authorization,cache-control,connection,content-base,content-encoding,"
    "content-language,content-length,content-location,content-md5,content-range,content-type,date,etag,"
    "expect,expires,from,host,if-match,if-modified-since,if-none-match,if-range,if-unmodified-since,"
    "last-modified,location,max-forwards,pragma,proxy-authenticate,proxy-authorization,range,referer,"
    "retry-after,server,te,trailer,transfer-encoding,upgrade,user-agent,vary,via,warning,"
    "www-authenticate,method,get,status,200 OK,version,HTTP/1.1,url,public,set-cookie,keep-alive,"
    "origin"
).split(",")
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 N"
    "on-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized4"
    "03 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan"
    " Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTch"
    "unked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,en"
    "q=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(t)) + t.encode() for t in _TOKENS) + _TAIL.encode()
"""The SPDY/3 header-compression dictionary (draft 3, section 2.6.10.1), rebuilt from its words."""

Send = Callable[[bytes], Awaitable[None]]


class Framer:
    """Frames in and out of one connection, with its two header-compression contexts."""

    def __init__(self) -> None:
        self.buffer = b""
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    def feed(self, data: bytes) -> list[tuple[bool, int, int, bytes]]:
        """(control, type or stream id, flags, payload) of every complete frame received so far."""
        self.buffer += data
        frames = []
        while len(self.buffer) >= 8:
            first, flags_length = struct.unpack(">II", self.buffer[:8])
            length = flags_length & 0xFFFFFF
            if len(self.buffer) < 8 + length:
                break
            payload, self.buffer = self.buffer[8 : 8 + length], self.buffer[8 + length :]
            control = bool(first & 0x80000000)
            kind = first & 0xFFFF if control else first & 0x7FFFFFFF
            frames.append((control, kind, flags_length >> 24, payload))
        return frames

    def headers(self, block: bytes) -> dict[str, str]:
        raw = self._inflate.decompress(block)
        (count,), pos, out = struct.unpack(">I", raw[:4]), 4, {}
        for _ in range(count):
            (size,) = struct.unpack(">I", raw[pos : pos + 4])
            name, pos = raw[pos + 4 : pos + 4 + size].decode().lower(), pos + 4 + size
            (size,) = struct.unpack(">I", raw[pos : pos + 4])
            out[name], pos = raw[pos + 4 : pos + 4 + size].decode(), pos + 4 + size
        return out

    def control(self, kind: int, payload: bytes, flags: int = 0) -> bytes:
        return struct.pack(">HHI", 0x8003, kind, flags << 24 | len(payload)) + payload

    def data(self, stream: int, payload: bytes, flags: int = 0) -> bytes:
        return struct.pack(">II", stream, flags << 24 | len(payload)) + payload

    def reply(self, stream: int) -> bytes:
        block = self._deflate.compress(struct.pack(">I", 0)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        return self.control(SYN_REPLY, struct.pack(">I", stream) + block)


class Session:
    """One SPDY connection: replies to every stream and hands them to `on_stream`/`on_data`."""

    def __init__(self, send: Send) -> None:
        self.framer = Framer()
        self.send = send
        self.streams: dict[int, dict[str, str]] = {}
        self.arrived = asyncio.Event()
        self.on_data: Callable[[int, bytes, bool], Awaitable[None]] | None = None
        self.early: list[tuple[int, bytes, bool]] = []
        """Data that came before anyone listened (kubectl sends stdin as soon as its streams exist)."""
        self.closed = asyncio.Event()

    async def receive(self, data: bytes) -> None:
        for control, kind, flags, payload in self.framer.feed(data):
            if not control:
                if self.on_data is None:
                    self.early.append((kind, payload, bool(flags & FIN)))
                else:
                    await self.on_data(kind, payload, bool(flags & FIN))
            elif kind == SYN_STREAM:
                stream = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                self.streams[stream] = self.framer.headers(payload[10:])
                await self.send(self.framer.reply(stream))
                self.arrived.set()
            elif kind == PING:
                await self.send(self.framer.control(PING, payload))
            elif kind == GOAWAY:
                self.closed.set()

    async def listen(self, on_data: Callable[[int, bytes, bool], Awaitable[None]]) -> None:
        """Hand data frames to `on_data` from now on, those that came early first."""
        self.on_data = on_data
        while self.early:
            await on_data(*self.early.pop(0))

    def stream_of(self, kind: str, **match: str) -> int | None:
        for stream, headers in self.streams.items():
            if headers.get("streamtype") == kind and all(headers.get(k) == v for k, v in match.items()):
                return stream
        return None

    async def write(self, stream: int, data: bytes, *, fin: bool = False) -> None:
        await self.send(self.framer.data(stream, data, FIN if fin else 0))


class _Feeder:
    """What aiohttp's protocol feeds upgraded bytes into (the `set_parser` contract)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.tasks: set[asyncio.Task[None]] = set()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        task = asyncio.get_running_loop().create_task(self.session.receive(data))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return False, b""

    def feed_eof(self) -> None:
        self.session.closed.set()


async def serve(
    request: web.Request,
    pod: dict[str, Any],
    *,
    ws: web.WebSocketResponse | None = None,
    run: Any = None,
    files: Any = None,
) -> web.StreamResponse:
    """Upgrade (or use the tunnel `ws`) and serve port-forward, or exec/attach when `run` is given."""
    offered = [p.strip() for p in request.headers.getall("X-Stream-Protocol-Version", [])]
    chosen = next((p for p in (*EXEC_PROTOCOLS, PORT_FORWARD) if p in offered), PORT_FORWARD)
    if ws is not None:
        return await _tunnel(ws, pod, files)
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("client went away")
    headers = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": chosen}
    response = web.StreamResponse(status=101, headers=headers)
    response.force_close()
    await response.prepare(request)

    async def send(frame: bytes) -> None:
        if not transport.is_closing():
            transport.write(frame)

    session = Session(send)
    feeder = _Feeder(session)
    request.protocol.set_parser(feeder)  # type: ignore[arg-type]
    with contextlib.suppress(ConnectionError):
        if run is None:
            await _port_forward(session, pod, files)
        else:
            await run(session)
    await asyncio.sleep(0.05)  # let the last frames leave before the connection goes
    transport.close()
    return response


async def _tunnel(ws: web.WebSocketResponse, pod: dict[str, Any], files: Any) -> web.WebSocketResponse:
    session = Session(ws.send_bytes)

    async def pump() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await session.receive(bytes(msg.data))
        session.closed.set()

    reader = asyncio.get_running_loop().create_task(pump())
    with contextlib.suppress(ConnectionError):
        await _port_forward(session, pod, files)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError, ConnectionError):
        await reader
        await ws.close()
    return ws


async def _port_forward(session: Session, pod: dict[str, Any], files: Any = None) -> None:
    listeners = portforward.listening(pod)
    conversations: dict[int, portforward.Conversation] = {}

    async def on_data(stream: int, data: bytes, fin: bool) -> None:
        if stream not in conversations:
            await _open(stream)
        conversation = conversations.get(stream)
        if conversation is not None and data:
            for chunk in portforward.chunks(conversation.receive(data)):
                await session.write(stream, chunk)
        if fin:
            await session.write(stream, b"", fin=True)

    async def _open(stream: int) -> None:
        headers = session.streams.get(stream) or {}
        if headers.get("streamtype") != "data":
            return
        port = int(headers.get("port", "0") or 0)
        if port in listeners:
            conversations[stream] = portforward.Conversation(listeners[port], files)
            return
        error = session.stream_of("error", requestid=headers.get("requestid", ""))
        if error is not None:
            await session.write(error, portforward.refused(pod, port).encode(), fin=True)

    await session.listen(on_data)
    seen: set[int] = set()
    while not session.closed.is_set():
        session.arrived.clear()
        for stream in [s for s in session.streams if s not in seen]:
            seen.add(stream)
            await _open(stream)
        waiter = asyncio.ensure_future(session.arrived.wait())
        closer = asyncio.ensure_future(session.closed.wait())
        await asyncio.wait({waiter, closer}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        closer.cancel()


def exec_runner(
    request: web.Request, work: Callable[..., Awaitable[int]], status: Callable[[int], Any]
) -> Any:
    """The exec/attach session of a SPDY upgrade: wait for the streams asked for, run, report."""
    asked = {n for n in ("stdin", "stdout", "stderr") if request.query.get(n, "") in ("true", "1")}
    wanted = {"error"} | asked

    async def run(session: Session) -> None:
        for _ in range(100):
            if wanted <= {h.get("streamtype", "") for h in session.streams.values()}:
                break
            session.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.arrived.wait(), 0.05)
        stdin: asyncio.Queue[bytes | None] = asyncio.Queue()
        stdin_stream = session.stream_of("stdin")

        async def on_data(stream: int, data: bytes, fin: bool) -> None:
            if stream == stdin_stream:
                if data:
                    stdin.put_nowait(data)
                if fin:
                    stdin.put_nowait(None)

        await session.listen(on_data)
        code = await work(session, stdin if stdin_stream is not None else None)
        for name in ("stdout", "stderr"):
            stream = session.stream_of(name)
            if stream is not None:
                await session.write(stream, b"", fin=True)
        error = session.stream_of("error")
        if error is not None:
            await session.write(error, json.dumps(status(code)).encode(), fin=True)
        await session.send(session.framer.control(GOAWAY, struct.pack(">II", 0, 0)))

    return run
