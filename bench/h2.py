"""HTTP/2 figures: guard's TLS listener under h2load (the `guard-h2` row, beside `guard-tls`, the
same guard under wrk over HTTP/1.1 with TLS), and the memory of idle watches held as streams of one
HTTP/2 connection against the same number held as HTTP/1.1 connections over TLS.

h2load prints no percentiles, so its `--log-file` (one line per request: start, status, µs) gives
p50 and p99. Watches are opened with the `h2` library over one TLS socket; it never holds a body.
"""

from __future__ import annotations

import asyncio
import select
import shutil
import socket
import ssl
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.load import BENCH_TOKEN, GET_PATH, LoadResult
from bench.procs import Skip, rss_bytes

WATCH_PATH = "/api/v1/namespaces/default/pods?watch=true"
H2_STREAMS = 1000
"""Watches held as streams of one connection (guard's `http2MaxStreams` is raised to allow them)."""


@dataclass(frozen=True)
class WatchMemory:
    """RSS growth of guard for `count` idle watches, each way."""

    count: int
    h2_opened: int
    h2_growth: int
    h1_opened: int
    h1_growth: int


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a serving certificate for 127.0.0.1/localhost: (cert, key, ca)."""
    from guard.cli.certs import make_ca, make_server_cert, write_pair

    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    write_pair(directory, "ca", ca)
    write_pair(directory, "server", make_server_cert(ca))
    return directory / "server.crt", directory / "server.key", directory / "ca.crt"


def run_h2load(port: int, seconds: float, workdir: Path, *, connections: int, streams: int = 1) -> LoadResult:
    """h2load against https://127.0.0.1:port for `seconds`: `connections` times `streams` in flight."""
    h2load = shutil.which("h2load")
    if h2load is None:
        raise Skip("h2load not found (scripts/system-deps.sh h2load)")
    log = workdir / "h2load.log"
    log.unlink(missing_ok=True)  # h2load appends to its log: each run reads only its own requests
    argv = [h2load, "-c", str(connections), "-m", str(streams), "-t", "2", "-D", str(max(1, round(seconds))),
            "-H", f"authorization: Bearer {BENCH_TOKEN}", "-H", "accept: application/json",
            f"--log-file={log}", f"https://127.0.0.1:{port}{GET_PATH}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0 or not log.is_file():
        raise Skip(f"h2load failed: {(done.stderr or done.stdout).strip()[:160]}")
    return parse_h2load(log.read_text(), seconds)


def parse_h2load(log: str, seconds: float) -> LoadResult:
    """Figures from h2load's per-request log (start µs, status, duration µs per line)."""
    durations, failed, first, last = [], 0, None, None
    for line in log.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        start, status, took = int(fields[0]), int(fields[1]), int(fields[2])
        durations.append(took)
        failed += not 200 <= status < 300
        first = start if first is None else min(first, start)
        last = start + took if last is None else max(last, start + took)
    if not durations or first is None or last is None:
        raise Skip("h2load logged no request")
    durations.sort()
    span = max((last - first) / 1e6, 1e-3)
    return LoadResult(rps=len(durations) / span, p50_ms=statistics.median(durations) / 1000,
                      p99_ms=durations[min(len(durations) - 1, int(len(durations) * 0.99))] / 1000,
                      requests=len(durations), non2xx=failed, socket_errors=0)


def watch_memory(port: int, pid: int, ca: Path, count: int = H2_STREAMS) -> WatchMemory:
    """RSS growth of `pid` holding `count` watches as streams of one HTTP/2 connection, then (after
    they are closed) as `count` HTTP/1.1 connections over TLS."""
    before = rss_bytes(pid)
    h2_opened, h2_rss = _h2_watches(port, pid, ca, count)
    asyncio.run(asyncio.sleep(2.0))  # guard closes the upstream side of each ended watch
    middle = rss_bytes(pid)
    h1_opened, h1_rss = asyncio.run(_h1_watches(port, pid, ca, count))
    return WatchMemory(count, h2_opened, h2_rss - before, h1_opened, h1_rss - middle)


def _h2_watches(port: int, pid: int, ca: Path, count: int) -> tuple[int, int]:
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import ResponseReceived

    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.increment_flow_control_window((1 << 30) - 65535)
    opened = 0
    try:
        for _ in range(count):
            conn.send_headers(conn.get_next_available_stream_id(), [
                (":method", "GET"), (":path", WATCH_PATH), (":scheme", "https"), (":authority", "localhost"),
                ("authorization", f"Bearer {BENCH_TOKEN}"), ("accept", "application/json")], end_stream=True)
        sock.sendall(conn.data_to_send())
        idle = 0
        while opened < count and idle < 50:
            if not sock.pending() and not select.select([sock], [], [], 0.2)[0]:
                idle += 1
                continue
            data = sock.recv(1 << 20)
            if not data:
                break
            idle = 0
            opened += sum(isinstance(e, ResponseReceived) for e in conn.receive_data(data))
            sock.sendall(conn.data_to_send())
        asyncio.run(asyncio.sleep(1.0))  # let guard settle before reading its memory
        return opened, rss_bytes(pid)
    finally:
        sock.close()


async def _h1_watches(port: int, pid: int, ca: Path, count: int) -> tuple[int, int]:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["http/1.1"])
    request = (f"GET {WATCH_PATH} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {BENCH_TOKEN}\r\n"
               "Accept: application/json\r\n\r\n").encode()
    held: list[asyncio.StreamWriter] = []

    async def one() -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="localhost"), 20)
            writer.write(request)
            status = await asyncio.wait_for(reader.readline(), 20)
        except (OSError, TimeoutError):
            return
        if b" 200 " in status:
            held.append(writer)
        else:
            writer.close()

    try:
        for start in range(0, count, 100):
            await asyncio.gather(*(one() for _ in range(min(100, count - start))))
        await asyncio.sleep(1.0)
        return len(held), rss_bytes(pid)
    finally:
        for writer in held:
            writer.close()
