"""Active health checks of one cluster's endpoints (its `health.checks: true`).

Every `checkInterval` seconds, `GET /readyz` on every endpoint at once, with guard's own credential;
an answer below 500 passes (an api-server that refuses guard's credential is still up), a 5xx, a
refused or broken connection or no answer within `checkTimeout` fails. Results go to the endpoint's
breaker like the outcomes of real requests: failures open its circuit, a pass closes it (and starts
slow start). It must never log a header, and it stops when its runtime is closed.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from guard.upstream.endpoints import Endpoint, Upstream


class HealthChecker:
    """The check loop of one Upstream; `start` does nothing when its checks are off."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.settings = upstream.health
        self.checks = 0
        """Checks made so far (tests count them)."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.settings.checks and self._task is None and self.upstream.endpoints:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.gather(*(self.check(ep) for ep in self.upstream.endpoints))
            await asyncio.sleep(self.settings.check_interval)

    async def check(self, ep: Endpoint) -> bool:
        """One check of `ep`, its result told to the breaker."""
        self.checks += 1
        timeout = aiohttp.ClientTimeout(total=self.settings.check_timeout)
        try:
            headers = self.upstream.credential.headers()
            async with ep.session.get(ep.url + "/readyz", headers=headers, timeout=timeout) as r:
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as e:
            ep.failed(type(e).__name__)
            return False
        if status >= 500:
            ep.failed(f"readyz-{status}")
            return False
        ep.answered()
        return True
