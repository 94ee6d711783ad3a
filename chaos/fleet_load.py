"""Open-loop load for the fleet simulation: requests on schedule over keep-alive connections to many
guard processes, counted by class (steady, runaway) and status, with the latency of each answer.

A `Target` is one kind of request (which guard, which cluster, which token); a `Load` sends `rate`
requests per second spread round-robin over its targets, each on the next free connection to that
guard, so a slow answer never delays the schedule (a request waiting for a connection is still timed
from when it was due). It is a bare HTTP/1.1 client on asyncio streams: cheap enough that a single
process drives a few thousand requests per second on the machine it shares with the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """One kind of request: `GET /clusters/{cluster}/...` on guard `port` with `token`."""

    port: int
    cluster: str
    token: str
    namespace: str = "default"

    def request(self) -> bytes:
        return (f"GET /clusters/{self.cluster}/api/v1/namespaces/{self.namespace}/pods/p HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{self.port}\r\nAuthorization: Bearer {self.token}\r\n"
                "Accept: application/json\r\n\r\n").encode()


@dataclass
class Tally:
    """What one class of requests got: status counts (0: no answer) and the 200s' latencies."""

    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def admitted(self) -> int:
        return self.statuses[200]

    @property
    def failed(self) -> int:
        """Answers that were neither 200 nor a quota refusal (429): 5xx, 4xx, no answer."""
        return sum(n for status, n in self.statuses.items() if status not in (200, 429))

    def p99(self) -> float:
        return percentile(self.latencies, 0.99)

    def p50(self) -> float:
        return percentile(self.latencies, 0.50)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Connection:
    """One keep-alive connection to a guard; reconnects after any error."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes, timeout: float) -> int:
        """The answer's status (0 when there was none within `timeout`)."""
        try:
            return await asyncio.wait_for(self._exchange(request), timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError):
            self.close()
            return 0

    async def _exchange(self, request: bytes) -> int:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            await self._skip_chunks()
        else:
            at = lower.find(b"\r\ncontent-length:")
            length = int(head[at + 17:].split(b"\r\n", 1)[0]) if at >= 0 else 0
            await self.reader.readexactly(length)
        if b"connection: close" in lower:
            self.close()
        return status

    async def _skip_chunks(self) -> None:
        assert self.reader is not None
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await self.reader.readexactly(size + 2)
            if size == 0:
                return

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Pool:
    """Up to `size` connections to one guard; a request waits for a free one."""

    def __init__(self, port: int, size: int) -> None:
        self.free: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(size):
            self.free.put_nowait(Connection(port))

    async def send(self, request: bytes, timeout: float) -> int:
        connection = await self.free.get()
        try:
            return await connection.send(request, timeout)
        finally:
            self.free.put_nowait(connection)

    def close(self) -> None:
        while not self.free.empty():
            self.free.get_nowait().close()


class Load:
    """`rate` requests/s over `targets` (round-robin) until stopped, into `tally`."""

    def __init__(self, pools: dict[int, Pool], targets: list[Target], rate: float, *,
                 timeout: float = 10.0) -> None:
        self.pools = pools
        self.targets = targets
        self.rate = rate
        self.timeout = timeout
        self.tally = Tally()
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._requests = [t.request() for t in targets]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def reset(self) -> Tally:
        """Start a new tally; return the one so far."""
        done, self.tally = self.tally, Tally()
        return done

    async def stop(self) -> Tally:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pending:
            await asyncio.wait(self._pending, timeout=self.timeout + 1)
        return self.tally

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start, i = loop.time(), 0
        while True:
            due = start + i / self.rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            k = i % len(self.targets)
            task = loop.create_task(self._one(self.targets[k].port, self._requests[k], due))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            i += 1

    async def _one(self, port: int, request: bytes, due: float) -> None:
        tally = self.tally
        status = await self.pools[port].send(request, self.timeout)
        tally.statuses[status] += 1
        if status == 200:
            tally.latencies.append(asyncio.get_running_loop().time() - due)
