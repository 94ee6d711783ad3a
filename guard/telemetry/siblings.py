"""Worker 0's reach into its siblings' admin apps under `guard serve --workers N`.

Every worker but 0 serves its admin app on a unix socket in the parent's private directory
(`guard.process.workers.WorkerSpec.admin_socket`). `Siblings` scrapes their /metrics concurrently with a short
timeout so worker 0 can answer one exposition for all (`guard.telemetry.merge`), and fetches one
sibling's debug page for `/debug/guard/<page>?worker=i`. A sibling that does not answer is left out
and counted; it must never turn worker 0's answer into a 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import aiohttp
from prometheus_client.core import Metric

from guard.telemetry import merge as metricsmerge

log = logging.getLogger(__name__)
SCRAPE_TIMEOUT = aiohttp.ClientTimeout(total=2.0)
"""Longest worker 0 waits for a sibling's answer; a scraper's own timeout is usually 10 s."""


class Siblings:
    """The other workers' admin sockets, one client session each, and the failed scrapes per worker."""

    def __init__(self, index: int, sockets: Mapping[int, str]) -> None:
        self.index = index
        """This worker's own index (0: the one on the admin address)."""
        self.sockets = dict(sockets)
        self.errors = dict.fromkeys(self.sockets, 0)
        self._sessions: dict[int, aiohttp.ClientSession] = {}

    @property
    def count(self) -> int:
        return len(self.sockets) + 1

    async def open(self) -> None:
        """One session per sibling (an aiohttp UnixConnector talks to one socket path). Each scrape
        opens a fresh connection: a kept one could be closed by the sibling's idle timeout just as
        the next scrape (as seldom as a minute later) picks it up, and count as a failed scrape."""
        for index, path in self.sockets.items():
            self._sessions[index] = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=path, force_close=True), timeout=SCRAPE_TIMEOUT)

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()

    async def exposition(self, own: bytes) -> bytes:
        """This worker's exposition `own` and every sibling that answered, each sample labelled
        `worker`, plus the `guard_workers_*` families."""
        indexes = sorted(self.sockets)
        scraped = await asyncio.gather(*(self._families(i) for i in indexes))
        by_worker = {i: found for i, found in zip(indexes, scraped, strict=True) if found is not None}
        by_worker[self.index] = metricsmerge.parse(own.decode())
        families = metricsmerge.merge(by_worker)
        return metricsmerge.render(families + metricsmerge.gathering(self.count, by_worker, self.errors))

    async def get(self, index: int, path: str) -> tuple[int, bytes] | None:
        """Status and body of GET `path` on sibling `index`'s admin app; None when it does not answer."""
        session = self._sessions.get(index)
        if session is None:
            return None
        try:
            async with session.get(f"http://worker-{index}{path}") as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("worker %d's admin app did not answer %s: %s", index, path, e)
            return None

    async def _families(self, index: int) -> list[Metric] | None:
        answer = await self.get(index, "/metrics")
        families = None
        if answer is not None and answer[0] == 200:
            try:
                families = metricsmerge.parse(answer[1].decode())
            except (ValueError, UnicodeDecodeError) as e:
                log.warning("worker %d's /metrics is not Prometheus text: %s", index, e)
        if families is None:
            self.errors[index] += 1
        return families
