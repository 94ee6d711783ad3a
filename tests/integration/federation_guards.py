"""Helpers for tests that run `guard serve` processes on Redis: configs, /metrics, floods, polling."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from tests.conftest import SimServer
from tests.proxy_fakes import GuardProcess


def write_config(path: Path, sim: SimServer, policies: Path, redis: str) -> Path:
    """A guard.yaml in front of `sim` with the access log off; `redis` is the YAML value."""
    path.write_text(
        f"listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n"
        f"clusters:\n  - name: dev\n    server: {sim.url}\n    token: {sim.tokens['admin']}\n"
        f"forwarding: passthrough\npolicies: {policies}\naccessLog: {{enabled: false}}\n"
        f"redis: {redis}\n")
    return path


@asynccontextmanager
async def guards_running(configs: list[Path]) -> AsyncIterator[list[GuardProcess]]:
    """Start a `guard serve` per config; every one is stopped afterwards, whatever happened."""
    guards = [GuardProcess(config) for config in configs]
    try:
        started = await asyncio.gather(*(g.start() for g in guards), return_exceptions=True)
        failed = [s for s in started if not isinstance(s, GuardProcess)]
        assert not failed, failed
        yield guards
    finally:
        for guard in guards:
            if guard.proc is not None:
                await guard.stop()


async def metric(guard: GuardProcess, name: str) -> float:
    """The value of an unlabelled metric (or its `_total`), -1 when absent."""
    async with aiohttp.ClientSession() as client, client.get(f"{guard.admin}/metrics") as resp:
        text = await resp.text()
    found = [line.split()[-1] for line in text.splitlines()
             if line.startswith((f"{name} ", f"{name}_total "))]
    return float(found[0]) if found else -1.0


async def all_metric(guards: list[GuardProcess], name: str, value: float) -> bool:
    return all(v == value for v in await asyncio.gather(*(metric(g, name) for g in guards)))


async def any_metric(guards: list[GuardProcess], name: str, value: float) -> bool:
    return any(v == value for v in await asyncio.gather(*(metric(g, name) for g in guards)))


async def eventually(check: Callable[[], object], timeout: float = 10.0, step: float = 0.05) -> bool:
    """Poll `check()` (sync or async) until truthy; for waiting, never as a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(step)
    return False


async def flood(guards: list[GuardProcess], token: str, rate: int, seconds: float, namespace: str = "team-a",
                statuses: Counter[int] | None = None) -> tuple[Counter[int], float]:
    """`rate` requests/s spread round-robin over the guards, on schedule (a flood ignores 429s);
    (status counts, the span from first send to last answer)."""
    statuses = statuses if statuses is not None else Counter()
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=300)) as client:

        async def one(url: str) -> None:
            async with client.get(f"{url}/api/v1/namespaces/{namespace}/configmaps", headers=headers) as r:
                await r.read()
                statuses[r.status] += 1

        loop = asyncio.get_running_loop()
        start, tasks = loop.time(), []
        for i in range(int(rate * seconds)):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(guards[i % len(guards)].url)))
        await asyncio.gather(*tasks)
        return statuses, loop.time() - start
