"""A raw HTTP/2 client for the tests: the `h2` library over a TLS socket with ALPN h2, blocking,
one connection, many streams. It records what arrives per stream (status, body bytes, end, reset)
and acknowledges received data only for streams that read (`reading`), so a test can make one
stream stop reading while the others go on. Attack helpers write frames h2 would refuse to build.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.settings import SettingCodes, Settings
from hyperframe.frame import ContinuationFrame, HeadersFrame, RstStreamFrame


@dataclass
class Answer:
    status: int = 0
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None


class H2Client:
    """One HTTP/2 connection to `host:port`, verified against `ca`."""

    def __init__(self, host: str, port: int, ca: Path, *, window: int = 65535,
                 connection_window: int = 1 << 30) -> None:
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection((host, port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.protocol = self.sock.selected_alpn_protocol()
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.local_settings = Settings(client=True, initial_values={
            SettingCodes.INITIAL_WINDOW_SIZE: window, SettingCodes.ENABLE_PUSH: 0})
        self.conn.initiate_connection()
        if connection_window > 65535:
            self.conn.increment_flow_control_window(connection_window - 65535)
        self.answers: dict[int, Answer] = {}
        self.reading: set[int] = set()
        """Streams whose received data is acknowledged (the others stop at their window)."""
        self.goaway: int | None = None
        """The error code of the GOAWAY received, if any."""
        self.closed = False
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def request(self, method: str, path: str, token: str, *, body: bytes = b"", read: bool = True,
                extra: list[tuple[str, str]] | None = None) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", "https"), (":authority", "localhost"),
                   ("authorization", f"Bearer {token}"), ("accept", "application/json"), *(extra or [])]
        if body:
            headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
        self.conn.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self.conn.send_data(stream_id, body, end_stream=True)
        self.answers[stream_id] = Answer()
        if read:
            self.reading.add(stream_id)
        self._flush()
        return stream_id

    def pump(self, timeout: float = 0.05) -> bool:
        """Read what arrived within `timeout`; False once the connection is closed."""
        if self.closed:
            return False
        if not self.sock.pending() and not select.select([self.sock], [], [], timeout)[0]:
            return True
        try:
            data = self.sock.recv(1 << 20)
        except (OSError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self._on(event)
        self._flush()
        return True

    def _on(self, event: object) -> None:
        if isinstance(event, ResponseReceived):
            status = dict(event.headers)[":status"]  # type: ignore[arg-type]
            self.answers[event.stream_id].status = int(status)
        elif isinstance(event, DataReceived):
            self.answers[event.stream_id].body += event.data
            if event.stream_id in self.reading:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, StreamEnded):
            self.answers[event.stream_id].ended = True
        elif isinstance(event, StreamReset):
            self.answers[event.stream_id].reset = event.error_code
        elif isinstance(event, ConnectionTerminated):
            self.goaway = int(event.error_code or 0)

    def wait(self, done: callable, timeout: float = 20.0) -> bool:  # type: ignore[valid-type]
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline or not self.pump():
                return bool(done())
        return True

    def get(self, path: str, token: str, timeout: float = 20.0) -> Answer:
        stream_id = self.request("GET", path, token)
        answer = self.answers[stream_id]
        self.wait(lambda: answer.ended or answer.reset is not None, timeout)
        return answer

    def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
        self._flush()

    # -- attacks: frames written by hand

    def rapid_resets(self, count: int, path: str, token: str) -> None:
        """HEADERS then RST_STREAM at once, `count` times, in one write (CVE-2023-44487)."""
        out = bytearray()
        for _ in range(count):
            stream_id = self.conn.get_next_available_stream_id()
            headers = [(":method", "GET"), (":path", path), (":scheme", "https"), (":authority", "localhost"),
                       ("authorization", f"Bearer {token}")]
            self.conn.send_headers(stream_id, headers, end_stream=True)
            self.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
            out += self.conn.data_to_send()
        try:
            self.sock.sendall(bytes(out))
        except OSError:
            self.closed = True

    def continuation_flood(self, frames: int, size: int = 16) -> None:
        """A HEADERS frame without END_HEADERS and `frames` CONTINUATION frames after it."""
        stream_id = self.conn.get_next_available_stream_id()
        block = self.conn.encoder.encode([(":method", "GET"), (":path", "/api"), (":scheme", "https"),
                                          (":authority", "localhost")])
        first = HeadersFrame(stream_id, data=block)
        first.flags.add("END_STREAM")
        out = bytearray(first.serialize())
        filler = b"\x40\x01x\x01y" * max(1, size // 5)  # literal header x: y, new names each time
        for _ in range(frames):
            out += ContinuationFrame(stream_id, data=filler).serialize()
        try:
            self.sock.sendall(bytes(out))
        except OSError:
            self.closed = True

    def raw_reset(self, stream_id: int) -> None:
        try:
            self.sock.sendall(RstStreamFrame(stream_id, error_code=8).serialize())
        except OSError:
            self.closed = True

    def set_window(self, size: int) -> None:
        self.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: size})
        self._flush()

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
