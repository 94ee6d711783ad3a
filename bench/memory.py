"""Memory figures: a proxy's resident memory while it holds many idle watches, and while a very
large LIST streams through it (with the transfer rate, to compare with direct).
Watches are opened by one asyncio client with many raw connections; the LIST is fetched by curl so
the client is never the bottleneck. It must never hold a body in memory itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import threading
from dataclasses import dataclass

from bench.load import BENCH_TOKEN
from bench.procs import Skip, raise_file_limit, rss_bytes
from bench.upstream import BIG_PATH

WATCH_REQUEST = (
    "GET /api/v1/namespaces/default/pods?watch=true HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    f"Authorization: Bearer {BENCH_TOKEN}\r\nAccept: application/json\r\n\r\n"
).encode()


@dataclass(frozen=True)
class WatchPoint:
    wanted: int
    opened: int
    rss: int


@dataclass(frozen=True)
class ListFigure:
    bytes: int
    rate: float
    """bytes per second"""
    rss_before: int
    rss_peak: int


def watch_capacity() -> int:
    """How many watches fit: the proxy holds two sockets per watch under the same file limit."""
    return max(0, (raise_file_limit() - 300) // 2)


async def _open_watch(port: int) -> asyncio.StreamWriter | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        writer.write(WATCH_REQUEST)
        status = await asyncio.wait_for(reader.readline(), 10)
    except (OSError, TimeoutError):
        return None
    if b" 200 " not in status:
        writer.close()
        return None
    return writer


async def _open_many(port: int, count: int, held: list[asyncio.StreamWriter]) -> None:
    batch = 200
    for start in range(0, count, batch):
        opened = await asyncio.gather(*(_open_watch(port) for _ in range(min(batch, count - start))))
        held.extend(w for w in opened if w is not None)
        if not any(opened):
            return  # the proxy takes no more watches; waiting for more timeouts would tell nothing new


async def _watch_steps(port: int, pid: int, steps: tuple[int, ...]) -> list[WatchPoint]:
    held: list[asyncio.StreamWriter] = []
    points = []
    try:
        for wanted in steps:
            await _open_many(port, wanted - len(held), held)
            await asyncio.sleep(1.0)  # let the proxy settle before reading its memory
            points.append(WatchPoint(wanted, len(held), rss_bytes(pid)))
    finally:
        for writer in held:
            writer.close()
    return points


def watch_memory(port: int, pid: int, steps: tuple[int, ...]) -> list[WatchPoint]:
    """RSS of `pid` (and its workers) after opening each cumulative number of idle watches."""
    return asyncio.run(_watch_steps(port, pid, steps))


def large_list(port: int, pid: int) -> ListFigure:
    """Fetch the big PodList through `port` with curl, sampling `pid`'s RSS meanwhile."""
    curl = shutil.which("curl")
    if curl is None:
        raise Skip("curl not found")
    before = rss_bytes(pid)
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], rss_bytes(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        done = subprocess.run(
            [curl, "-s", "-o", "/dev/null", "-w", "%{size_download} %{speed_download} %{http_code}",
             "-H", f"Authorization: Bearer {BENCH_TOKEN}", f"http://127.0.0.1:{port}{BIG_PATH.decode()}"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        stop.set()
        sampler.join()
    with contextlib.suppress(ValueError):
        size, speed, code = done.stdout.split()
        if code == "200":
            return ListFigure(int(size), float(speed), before, peak[0])
    raise Skip(f"LIST failed: {done.stdout.strip()} {done.stderr.strip()[:120]}")
