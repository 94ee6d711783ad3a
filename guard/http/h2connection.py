"""One client connection that chose HTTP/2 by ALPN: frames in and out through the `h2` library, each
stream a `guard.http.h2stream.H2Request` served by the same handler as an HTTP/1.1 request, the
connection's accounting (maxConnections, idle, write stalls) kept by its owner
`guard.http.connection.Connection`.

What HTTP/2 needs beyond HTTP/1.1's defences, each bounded per connection:
- concurrent streams: SETTINGS_MAX_CONCURRENT_STREAMS (`limits.http2MaxStreams`, 100 as the
  api-server's `--http2-max-streams-per-connection`); a client that opens more is cut (h2 ends the
  connection with a PROTOCOL_ERROR GOAWAY);
- rapid reset (CVE-2023-44487): every RST_STREAM from the client spends from a budget
  (`limits.http2MaxResetsPerSecond`, a burst of twice that); past it, GOAWAY ENHANCE_YOUR_CALM
  and close, and every stream's handler is cancelled (seat and upstream request go back);
- CONTINUATION flood and header size: SETTINGS_MAX_HEADER_LIST_SIZE (`limits.http2MaxHeaderListBytes`)
  is enforced by the HPACK decoder, and h2 refuses a header block of more than 64 frames;
- SETTINGS and PING floods: budgets of PING_RATE and SETTINGS_RATE a second (bursts of FLOOD_BURST);
  frames that ask for no work (PRIORITY, unknown types, empty DATA) share NOISE_RATE (CVE-2019-9513,
  -9518);
- a stream whose window stays shut for `writeTimeout` with output waiting is reset (its handler
  cancelled), as an HTTP/1.1 client that reads nothing is cut; the others go on.
`limits.http2GoawayChance` tells a client GOAWAY after a stream now and then, so clients behind a
load balancer spread over the replicas again (the api-server's `--goaway-chance`). On drain
(SIGTERM) and when idle, GOAWAY NO_ERROR first: the client opens its next streams on
another connection (another replica) while the open ones finish. It must never log a header or a body.
It runs past 300 lines because the h2 event loop and the per-connection budgets it spends are one
state machine: split, each half would need the other's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    PingReceived,
    PriorityUpdated,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    UnknownFrameReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError
from h2.settings import SettingCodes, Settings
from hpack import Encoder, HeaderTuple
from hyperframe.frame import GoAwayFrame

from guard.http import answers
from guard.http.h2stream import H2Request, H2Stream
from guard.kube.errors import GuardError

if TYPE_CHECKING:
    from guard.http.connection import Connection
    from guard.http.server import Server

log = logging.getLogger(__name__)
PING_RATE = 10.0
"""PINGs a second a client may send on average (client-go pings an idle connection every 30 s)."""
SETTINGS_RATE = 10.0
"""SETTINGS frames a second a client may send on average."""
FLOOD_BURST = 100
"""How far above its rate a client may go for a moment (PING, SETTINGS)."""
NOISE_RATE = 100.0
"""Frames a second that ask for no work (PRIORITY, unknown types, empty DATA) a client may send."""
NOISE_BURST = 1000
"""How far above NOISE_RATE a client may go for a moment."""


class PlainEncoder(Encoder):
    """HPACK without Huffman coding for guard's answers: pure-Python Huffman coding cost more than
    the rest of an answer's frames, for a few bytes a header (the dynamic table still indexes
    repeated fields). The header lists are guard's own (guard.http.h2stream.h2_headers: lower-case
    names, trimmed values), so h2's outbound checks are off too."""

    def encode(self, headers: Iterable[HeaderTuple | tuple[bytes | str, bytes | str]
                                       | tuple[bytes | str, bytes | str, bool | None]]
               | dict[bytes | str, bytes | str], huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


class Budget:
    """A rate with a burst: `spend` says False once events come faster than `rate` a second for
    longer than `burst` events (a leaky bucket)."""

    __slots__ = ("_at", "_burst", "_level", "_rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate, self._burst, self._level, self._at = rate, burst, 0.0, now

    def spend(self, now: float) -> bool:
        self._level = max(0.0, self._level - (now - self._at) * self._rate) + 1.0
        self._at = now
        return self._level <= self._burst


class H2Session:
    """The HTTP/2 side of one connection: h2's state machine, the streams, the flood budgets."""

    __slots__ = ("_ended", "_flushing", "_goaway", "_h2", "_noise", "_owner", "_pings", "_resets",
                 "_server", "_settings", "remote", "streams")

    def __init__(self, owner: Connection, server: Server) -> None:
        self._owner = owner
        self._server = server
        self.remote = owner.remote
        limits = server.limits
        conn = H2Connection(H2Configuration(
            client_side=False, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False))
        conn.encoder = PlainEncoder()
        conn.local_settings = Settings(client=False, initial_values={
            # 0 (HTTP/2 off) takes a restart, ALPN being fixed at start: until then, one stream at a time
            SettingCodes.MAX_CONCURRENT_STREAMS: max(1, limits.http2_max_streams),
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.http2_max_header_list,
        })
        conn.decoder.max_header_list_size = limits.http2_max_header_list
        self._h2 = conn
        self.streams: dict[int, H2Stream] = {}
        self._goaway = False
        self._ended = False
        self._flushing = False
        now = server.loop.time()
        rate = limits.http2_max_resets
        self._resets = Budget(rate, 2 * rate, now)
        self._pings = Budget(PING_RATE, FLOOD_BURST, now)
        self._settings = Budget(SETTINGS_RATE, FLOOD_BURST, now)
        self._noise = Budget(NOISE_RATE, NOISE_BURST, now)
        conn.initiate_connection()
        self._flush_now()

    # -- what H2Stream needs (guard.http.h2stream.Session)

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._owner.transport  # type: ignore[return-value]

    @property
    def writing_paused(self) -> bool:
        return self._owner.writing_paused

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], *, end: bool) -> None:
        try:
            self._h2.send_headers(stream_id, headers, end_stream=end)
        except H2Error as e:  # the stream or the connection closed meanwhile: as a client that left
            raise ConnectionResetError("the stream is closed") from e
        self._flush()

    def send_data(self, stream_id: int, data: memoryview) -> int:
        """Send as much of `data` as the windows allow; the bytes taken."""
        conn = self._h2
        try:
            size = min(len(data), conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
            if size <= 0 or self._owner.writing_paused:
                return 0
            conn.send_data(stream_id, bytes(data[:size]))
        except H2Error as e:
            raise ConnectionResetError("the stream is closed") from e
        self._flush()
        return size

    def end_stream(self, stream_id: int) -> None:
        try:
            self._h2.end_stream(stream_id)
        except H2Error as e:
            raise ConnectionResetError("the stream is closed") from e
        self._flush()
        self._finished(stream_id)

    def acknowledge(self, stream_id: int, size: int) -> None:
        with contextlib.suppress(H2Error):  # the stream closed meanwhile
            self._h2.acknowledge_received_data(size, stream_id)
            self._flush()

    # -- frames in

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except ProtocolError:  # h2 has queued its GOAWAY (too many streams, headers too large, ...)
            self._server.stats.http2_errors += 1
            self._end()
            return
        for event in events:
            if self._ended:
                return  # a flood ended the connection: the rest of this read is dropped
            self._on(event)
        self._flush_now()

    def _on(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self._open(event)
        elif isinstance(event, DataReceived):
            if not event.flow_controlled_length and not event.stream_ended:
                self._spend(self._noise)  # an empty DATA frame carries nothing (CVE-2019-9518)
                return
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.received(event.data, event.flow_controlled_length)
            elif event.flow_controlled_length:  # for a stream guard already closed: give the window back
                with contextlib.suppress(H2Error):
                    self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None and not stream.payload.is_eof():
                stream.payload.feed_eof()
        elif isinstance(event, WindowUpdated):
            self.pump(event.stream_id)
        elif isinstance(event, StreamReset):
            self._reset_by_client(event.stream_id)
        elif isinstance(event, RemoteSettingsChanged):
            self._spend(self._settings)
            self.pump(0)
        elif isinstance(event, PingReceived):
            self._spend(self._pings)
        elif isinstance(event, PriorityUpdated | UnknownFrameReceived):
            self._spend(self._noise)  # frames that ask for no work: PRIORITY flood (CVE-2019-9513)
        elif isinstance(event, ConnectionTerminated):
            # The client is leaving (h2 sends nothing more after a GOAWAY): its streams end with it.
            self._goaway = self._ended = True
            self.lost()
            self._close()

    def _spend(self, budget: Budget) -> None:
        if not budget.spend(self._server.loop.time()):
            self._server.stats.http2_floods += 1
            self.goaway(ErrorCodes.ENHANCE_YOUR_CALM)
            self._end()

    def _open(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        if stream_id is None or event.headers is None:
            return
        if self._goaway:  # after GOAWAY: the client retries it elsewhere
            with contextlib.suppress(H2Error):
                self._h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        stream = H2Stream(self, stream_id, with_body=event.stream_ended is None)
        self.streams[stream_id] = stream
        if len(self.streams) == 1:
            self._owner.busy()
        request = H2Request(stream, list(event.headers))  # type: ignore[arg-type]
        stream.task = self._server.loop.create_task(self._serve(stream, request))
        chance = self._server.limits.http2_goaway_chance
        if chance and random.random() < chance:  # spreading load, not a secret
            self._server.stats.http2_rebalanced += 1
            self.goaway()  # this stream is served; the client opens its next elsewhere

    async def _serve(self, stream: H2Stream, request: H2Request) -> None:
        try:
            await self._server.handler(request)
            if not request.answered:
                log.error("no answer for %s %s; answering 500", request.method, request.path)
                await request.send(answers.status(GuardError("internal error in guard")))
            elif not stream.end_asked:
                await stream.end()
        except asyncio.CancelledError:
            self._reset(stream, ErrorCodes.CANCEL)
            raise
        except Exception:  # as on HTTP/1.1: only when nothing honest is left to say; the stream says so
            self._reset(stream, ErrorCodes.INTERNAL_ERROR)
        finally:
            stream.task = None
            if stream.body_pending and stream.idle and not stream.closed:
                # answered before the body arrived (a refusal): the client may stop sending it (RFC 9113 8.1)
                self._reset(stream, ErrorCodes.NO_ERROR)
            self._finished(stream.id)

    def _reset_by_client(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            self._close_stream(stream)
        self._spend(self._resets)

    def _reset(self, stream: H2Stream, code: ErrorCodes) -> None:
        if not stream.closed:
            with contextlib.suppress(H2Error):
                self._h2.reset_stream(stream.id, code)
                self._flush()
        self._close_stream(stream)

    def _close_stream(self, stream: H2Stream) -> None:
        """The stream is over (reset): its handler stops (seat and upstream request go back)."""
        stream.close()
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()
        self._finished(stream.id)

    def _finished(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or (stream.task is not None and not stream.closed):
            return  # its handler still runs: it comes back here when it ends
        del self.streams[stream_id]
        if not self.streams:
            if self._goaway:
                self._close()
            else:
                self._owner.spare()

    # -- frames out

    def pump(self, stream_id: int) -> None:
        """A window opened (0: the connection's, or the transport drained): send what waits."""
        if stream_id:
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.push()
            return
        for stream in list(self.streams.values()):
            stream.push()

    def _flush(self) -> None:
        """Send what h2 has queued at the end of this loop iteration: the frames of every stream
        answered meanwhile leave in one write (small writes apart cost a syscall each, and Nagle's
        wait for the client's delayed ACK)."""
        if not self._flushing:
            self._flushing = True
            self._server.loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flushing = False
        data = self._h2.data_to_send()
        if data and self._owner.transport is not None and not self._owner.transport.is_closing():
            self._owner.write(data)

    def goaway(self, code: ErrorCodes = ErrorCodes.NO_ERROR) -> None:
        """Tell the client to open no more streams here. NO_ERROR: those open go on (the frame is
        written past h2, whose state machine would refuse every frame after its own GOAWAY, and
        streams opened meanwhile are refused); an error code: h2 closes the connection."""
        if self._goaway and code == ErrorCodes.NO_ERROR:
            return
        self._goaway = True
        if code != ErrorCodes.NO_ERROR:
            with contextlib.suppress(H2Error):
                self._h2.close_connection(error_code=code, last_stream_id=self._h2.highest_inbound_stream_id)
            self._flush_now()
            return
        self._flush_now()
        transport = self._owner.transport
        if transport is not None and not transport.is_closing():
            frame = GoAwayFrame(0, last_stream_id=self._h2.highest_inbound_stream_id, error_code=code)
            self._owner.write(frame.serialize())

    def _close(self) -> None:
        """Close after what h2 has queued (a stream's last frames, a GOAWAY) has been written."""
        self._flush_now()
        self._owner.close()

    def _end(self) -> None:
        """A connection error: what h2 queued (its GOAWAY) goes out, then the connection closes."""
        self._goaway = self._ended = True
        self._flush_now()
        self.lost()
        self._close()

    # -- the owner's calls

    def lost(self) -> None:
        """The connection is gone: every stream's handler stops."""
        for stream in list(self.streams.values()):
            stream.close()
            if stream.task is not None and not stream.task.done():
                stream.task.cancel()
        self.streams.clear()

    def close_if_idle(self, now: float, timeout: float, idle_since: float | None) -> bool:
        """No stream open for `timeout` seconds: GOAWAY and close; True when closed. Draining
        (timeout 0 while the server closes) sends GOAWAY at once even with streams open."""
        if self._server.closing:
            self.goaway()
        if self.streams or idle_since is None or now - idle_since < timeout:
            return False
        self.goaway()
        self._close()
        return True

    def sweep(self, now: float) -> None:
        """Reset each stream whose output has waited on a shut window for `writeTimeout`."""
        timeout = self._server.limits.write_timeout
        for stream in list(self.streams.values()):
            if stream.blocked_since is not None and now - stream.blocked_since >= timeout:
                self._server.stats.write_timeouts += 1
                self._reset(stream, ErrorCodes.CANCEL)
