"""The demo's two kinds of client, and the per-second figures of what each experienced.

A `FloodClient` is the runaway: many workers LIST a large collection back to back, ignoring
Retry-After. A `SteadyClient` is the well-behaved neighbour: small GETs at a fixed rate. Both speak
raw HTTP with aiohttp to a list of api-server endpoints and move to the next endpoint on a
connection error, as a client behind a load balancer would; both record every answer in a
`Stats` by second. This module never starts processes and never prints.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import aiohttp

CHUNK = 64 * 1024
OK, REJECTED, FAILED, REFUSED = "ok", "429", "error", "refused"


@dataclass
class Second:
    """What one client saw during one second."""

    counts: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def share(self, outcome: str) -> float:
        """The fraction of answers with `outcome`, 1.0 when there were none."""
        return self.counts.get(outcome, 0) / self.total if self.total else 1.0

    def percentile(self, q: float) -> float:
        """Latency quantile in seconds over successful requests (0 when none succeeded)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def merge(self, other: Second) -> None:
        for outcome, n in other.counts.items():
            self.counts[outcome] = self.counts.get(outcome, 0) + n
        self.latencies.extend(other.latencies)


class Stats:
    """Answers bucketed by whole seconds since `start`."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.seconds: dict[int, Second] = {}

    def record(self, at: float, outcome: str, latency: float) -> None:
        second = self.seconds.setdefault(int(at - self.start), Second())
        second.counts[outcome] = second.counts.get(outcome, 0) + 1
        if outcome == OK:
            second.latencies.append(latency)

    def second(self, index: int) -> Second:
        return self.seconds.get(index, Second())

    def overall(self) -> Second:
        total = Second()
        for second in self.seconds.values():
            total.merge(second)
        return total


class Endpoints:
    """The api-server URLs of one cluster; a client sticks to one until it fails to connect."""

    def __init__(self, urls: list[str], first: int = 0) -> None:
        if not urls:
            raise ValueError("at least one endpoint is needed")
        self.urls = list(urls)
        self._index = first % len(urls)

    @property
    def current(self) -> str:
        return self.urls[self._index]

    def rotate(self) -> None:
        self._index = (self._index + 1) % len(self.urls)


def classify(status: int) -> str:
    if status < 400:
        return OK
    return REJECTED if status == 429 else FAILED


async def fetch(session: aiohttp.ClientSession, endpoints: Endpoints, path: str, token: str) -> str:
    """GET one path, draining the body without keeping it; the outcome, rotating on refusal."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with session.get(endpoints.current + path, headers=headers) as response:
            async for _ in response.content.iter_chunked(CHUNK):
                pass
            return classify(response.status)
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
        endpoints.rotate()
        return REFUSED
    except TimeoutError:
        return FAILED


@dataclass
class FloodClient:
    """The runaway: `concurrency` workers LISTing `path` in a loop, never backing off."""

    urls: list[str]
    token: str = ""
    path: str = "/api/v1/pods"
    concurrency: int = 16
    stats: Stats = field(default_factory=lambda: Stats(0.0))

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            for i in range(self.concurrency):
                group.create_task(self._worker(session, stop, Endpoints(self.urls, first=i)))

    async def _worker(
        self, session: aiohttp.ClientSession, stop: asyncio.Event, endpoints: Endpoints
    ) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            outcome = await fetch(session, endpoints, self.path, self.token)
            self.stats.record(started, outcome, loop.time() - started)
            if outcome == REFUSED:
                await asyncio.sleep(0.05)  # even a runaway does not spin on a closed port


@dataclass
class SteadyClient:
    """The well-behaved neighbour: one small GET every 1/rate seconds, each on its own task."""

    urls: list[str]
    token: str = ""
    path: str = "/api/v1/namespaces/default"
    rate: float = 20.0
    timeout_s: float = 5.0
    stats: Stats = field(default_factory=lambda: Stats(0.0))

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        endpoints = Endpoints(self.urls)
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        next_at = loop.time()
        while not stop.is_set():
            task = loop.create_task(self._one(session, endpoints))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += 1.0 / self.rate
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - loop.time()))
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, session: aiohttp.ClientSession, endpoints: Endpoints) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            outcome = await asyncio.wait_for(fetch(session, endpoints, self.path, self.token), self.timeout_s)
        except TimeoutError:
            outcome = FAILED
        self.stats.record(started, outcome, loop.time() - started)
