"""The traffic of a scenario: one asyncio task group per client class, each request recorded in a
per-class, per-second `Recorder` (outcome, latency, 429s and their Retry-After).

Clients speak raw HTTP with aiohttp, rotate to the next endpoint on connection errors (as a load
balancer or client-go with several servers would), and honour Retry-After when told to. This module
never starts processes and never prints; it only sends requests and counts what came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from chaos.scenario import ClientSpec, RequestSpec

MAX_OUTSTANDING_PER_CLIENT = 64
CHUNK = 64 * 1024
ACCEPT = {"json": "application/json",
          "protobuf": "application/vnd.kubernetes.protobuf, application/json"}
"""The Accept header of each `accept:` choice (client-go's for protobuf)."""


@dataclass
class Second:
    """What one client class saw in one second."""

    requests: int = 0
    ok: int = 0
    throttled: int = 0
    server_errors: int = 0
    other: int = 0
    conn_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    retry_after: list[float] = field(default_factory=list)


class Recorder:
    """Per class, per second outcomes of one phase (seconds counted from the phase's start)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.seconds: dict[str, dict[int, Second]] = defaultdict(lambda: defaultdict(Second))

    def now(self) -> float:
        return self.loop.time() - self.t0

    def record(self, cls: str, started: float, status: int | None, retry_after: str | None = None) -> None:
        second = self.seconds[cls][int(self.now())]
        second.requests += 1
        if status is None:
            second.conn_errors += 1
            return
        second.latencies_ms.append((self.now() - started) * 1000.0)
        if 200 <= status < 300:
            second.ok += 1
        elif status == 429:
            second.throttled += 1
            with contextlib.suppress(TypeError, ValueError):
                second.retry_after.append(float(retry_after))  # type: ignore[arg-type]
        elif status >= 500:
            second.server_errors += 1
        else:
            second.other += 1


_MODULO = re.compile(r"\{i%(\d+)\}")


def _fill(value: Any, i: int, n: int, user: str) -> Any:
    if isinstance(value, str):
        value = _MODULO.sub(lambda m: str(i % int(m.group(1))), value)
        return value.replace("{i}", str(i)).replace("{n}", str(n)).replace("{user}", user)
    if isinstance(value, Mapping):
        return {k: _fill(v, i, n, user) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, i, n, user) for v in value]
    return value


class Client:
    """One client of a class: its identity, its endpoints and its request loop(s)."""

    def __init__(self, spec: ClientSpec, index: int, urls: Sequence[str], token: str, rec: Recorder) -> None:
        self.spec, self.index, self.urls, self.rec = spec, index, list(urls), rec
        self.endpoint = index % len(self.urls)
        self.user = spec.user_for(index)
        self.headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT[spec.accept]}
        self.counter = itertools.count()
        self.rng = random.Random(f"{spec.name}-{index}")

    def url(self, path: str) -> str:
        return self.urls[self.endpoint] + path

    def failover(self) -> None:
        self.endpoint = (self.endpoint + 1) % len(self.urls)

    def pick(self) -> RequestSpec:
        return self.rng.choices(self.spec.mix, weights=[r.weight for r in self.spec.mix])[0]

    async def run(self, session: aiohttp.ClientSession) -> None:
        if self.spec.rate is None:
            await asyncio.gather(*(self.worker(session) for _ in range(self.spec.concurrency)))
        else:
            await self.paced(session, self.spec.rate)

    async def paced(self, session: aiohttp.ClientSession, rate: float) -> None:
        """Open loop: start a request every 1/rate s whatever happened to the previous ones."""
        interval = 1.0 / rate
        await asyncio.sleep(self.rng.uniform(0, interval))
        outstanding: set[asyncio.Task[float]] = set()
        try:
            while True:
                if len(outstanding) < MAX_OUTSTANDING_PER_CLIENT:
                    task = asyncio.create_task(self.once(session, self.pick()))
                    outstanding.add(task)
                    task.add_done_callback(outstanding.discard)
                await asyncio.sleep(interval)
        finally:
            for task in outstanding:
                task.cancel()

    async def worker(self, session: aiohttp.ClientSession) -> None:
        """Closed loop: the next request as soon as the last one ended (after Retry-After, if told)."""
        while True:
            request = self.pick()
            if request.kind == "watch":
                await self.watch(session, request)
                continue
            pause = await self.once(session, request)
            await asyncio.sleep(pause)

    async def once(self, session: aiohttp.ClientSession, request: RequestSpec) -> float:
        """Send one request; returns how long a well-mannered client pauses before the next."""
        n = next(self.counter)
        path = _fill(request.path, self.index, n, self.user)
        body = None if request.body is None else json.dumps(_fill(request.body, self.index, n, self.user))
        headers = dict(self.headers)
        if body is not None:
            patch = "application/merge-patch+json"
            headers["Content-Type"] = patch if request.method == "PATCH" else "application/json"
        started = self.rec.now()
        try:
            async with session.request(request.method, self.url(path), data=body, headers=headers) as resp:
                await self.drain(resp)
                retry_after = resp.headers.get("Retry-After")
                self.rec.record(self.spec.name, started, resp.status, retry_after)
        except (TimeoutError, aiohttp.ClientError, OSError):
            self.rec.record(self.spec.name, started, None)
            self.failover()
            return 0.1  # a connection error costs a real client a dial timeout or backoff, not nothing
        return self.pause(resp.status, retry_after)

    def pause(self, status: int, retry_after: str | None) -> float:
        if status == 429 and self.spec.honor_retry_after and retry_after:
            with contextlib.suppress(ValueError):
                return min(float(retry_after), 10.0) * self.rng.uniform(1.0, 1.2)
        return 0.05 if status >= 500 else 0.0

    async def drain(self, resp: aiohttp.ClientResponse) -> None:
        delay = self.spec.read_delay_s
        while chunk := await resp.content.read(1024 if delay else CHUNK):
            if delay:
                await asyncio.sleep(delay)
            del chunk

    async def watch(self, session: aiohttp.ClientSession, request: RequestSpec) -> None:
        """LIST, then WATCH from the listed resourceVersion until the stream ends (a crash), like a
        reflector. Every watcher re-LISTs at once after a restart: that is the storm."""
        path = _fill(request.path, self.index, next(self.counter), self.user)
        started = self.rec.now()
        try:
            async with session.get(self.url(path), headers=self.headers) as resp:
                listed = await resp.read() if resp.status == 200 else b""
                self.rec.record(self.spec.name, started, resp.status, resp.headers.get("Retry-After"))
                if resp.status != 200:
                    await asyncio.sleep(self.pause(resp.status, resp.headers.get("Retry-After")) or 0.2)
                    return
            rv = json.loads(listed).get("metadata", {}).get("resourceVersion", "")
            sep = "&" if "?" in path else "?"
            watch_url = self.url(f"{path}{sep}watch=true&resourceVersion={rv}&allowWatchBookmarks=true")
            timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
            async with session.get(watch_url, headers=self.headers, timeout=timeout) as resp:
                while await resp.content.readany():
                    pass
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            self.rec.record(self.spec.name, started, None)
            self.failover()
            await asyncio.sleep(0.2)


async def run_clients(
    specs: Sequence[ClientSpec],
    urls: Sequence[str],
    tokens: Mapping[str, str],
    rec: Recorder,
    duration_s: float,
) -> None:
    """Run the client classes for `duration_s` seconds, each from its start to its stop offset."""
    async with contextlib.AsyncExitStack() as stack:
        tasks = []
        for spec in specs:
            connector = aiohttp.TCPConnector(limit=0, force_close=False)
            timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
            session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=connector, timeout=timeout)
            )
            for i in range(spec.count):
                token = tokens.get("revoked" if spec.revoked else spec.user_for(i), "")
                client = Client(spec, i, urls, token, rec)
                tasks.append(asyncio.create_task(_windowed(client, session, duration_s)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _windowed(client: Client, session: aiohttp.ClientSession, duration_s: float) -> None:
    start = client.spec.start_s
    stop = min(duration_s, client.spec.stop_s if client.spec.stop_s is not None else duration_s)
    if stop <= start:
        return
    await asyncio.sleep(start)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(client.run(session), timeout=stop - start)
