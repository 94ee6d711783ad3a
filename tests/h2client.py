"""`guard serve` with TLS in front of the simulator (`start_guard`, its access log, metrics and RSS),
and a raw HTTP/2 client: the `h2` library over a TLS socket with ALPN h2, blocking, one connection,
many streams. The client records what arrives per stream (status, body bytes, end, reset) and
acknowledges received data only for streams that read (`reading`), so a test can make one stream
stop reading while the others go on. Attack helpers write frames h2 would refuse to build.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
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

from guard.cli.certs import make_ca, make_server_cert, write_pair
from tests.conftest import SimServer


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
            if self.goaway == 0:  # graceful: open streams go on (h2 would refuse their frames)
                self.conn.state_machine.state = ConnectionState.CLIENT_OPEN

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


@dataclass
class Guard:
    process: subprocess.Popen[str]
    host: str
    port: int
    ca: Path
    access_log: Path
    admin: str
    sim: SimServer

    def client(self, **kwargs: int) -> H2Client:
        return H2Client(self.host, self.port, self.ca, **kwargs)

    def token(self, user: str = "alice") -> str:
        return self.sim.tokens[user]

    def log_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line.strip()]

    def wait_log(self, keep: Callable[[dict[str, object]], bool], count: int) -> list[dict[str, object]]:
        """The access log's lines that `keep` keeps, once there are `count` (or after 10 s)."""
        lines: list[dict[str, object]] = []
        for _ in range(200):
            lines = [line for line in self.log_lines() if keep(line)]
            if len(lines) >= count:
                break
            time.sleep(0.05)
        return lines

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.admin + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("guard_"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


def start_guard(sim: SimServer, tmp_path: Path, limits: str = "") -> Guard:
    certs = tmp_path / "guard-certs"
    certs.mkdir(exist_ok=True)
    ca = make_ca()
    write_pair(certs, "ca", ca)
    write_pair(certs, "server", make_server_cert(ca))
    log = tmp_path / "access.log"
    config = tmp_path / "guard.yaml"
    config.write_text(
        f"listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n"
        f"tls: {{cert: {certs}/server.crt, key: {certs}/server.key}}\n"
        f"clusters:\n  - name: sim\n    server: {sim.url}\n    token: {sim.tokens['admin']}\n"
        f"forwarding: passthrough\naccessLog: {{path: {log}}}\n{limits}")
    process = subprocess.Popen([sys.executable, "-m", "guard.cli", "serve", "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("guard serving https://"), line
    url, admin = line.split()[2], line.split()[4]
    host, port = url.removeprefix("https://").rsplit(":", 1)
    return Guard(process, host, int(port), certs / "ca.crt", log, admin, sim)


