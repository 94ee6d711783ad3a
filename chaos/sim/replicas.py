"""The api-server replicas of one simulated cluster: listening, crashing, restarting.

Replica i listens on `options.port + i` with its own aiohttp runner and its own `ReplicaLoad`;
all replicas serve one shared store (held by whoever builds the apps). A crash is abrupt, like a
killed process: the listening socket closes (connections are refused), every open connection is
aborted (so every watch the replica served ends), and after `restart_delay_s` a fresh app comes
back on the same port with fresh in-flight state. This module never touches the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable

from aiohttp import web

from chaos.sim.metrics import SimMetrics
from chaos.sim.options import SimOptions
from chaos.sim.overload import ReplicaLoad

AppFactory = Callable[[ReplicaLoad], web.Application]

# Handlers still running when a replica goes down get this long before they are cancelled.
_SHUTDOWN_TIMEOUT_S = 0.5


class ReplicaSet:
    """`options.replicas` api-server endpoints on consecutive ports."""

    def __init__(
        self,
        options: SimOptions,
        app_factory: AppFactory,
        ssl_context: ssl.SSLContext | None,
        *,
        metrics: SimMetrics | None = None,
    ) -> None:
        self.options = options
        self.metrics = metrics if metrics is not None else SimMetrics()
        self._app_factory = app_factory
        self._ssl_context = ssl_context
        self.loads = [ReplicaLoad(i, options, self.metrics) for i in range(options.replicas)]
        for load in self.loads:
            load.on_crash = self._crash_hook(load.index)
        self._runners: list[web.AppRunner | None] = [None] * options.replicas
        self._ports: list[int] = list(options.replica_ports())
        self._restarts: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def urls(self) -> list[str]:
        scheme = "https" if self._ssl_context is not None else "http"
        host = self.options.host
        shown = f"[{host}]" if ":" in host else host
        return [f"{scheme}://{shown}:{port}" for port in self._ports]

    async def start(self) -> None:
        for i in range(len(self.loads)):
            await self._start_replica(i)

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._restarts):
            task.cancel()
        for task in list(self._restarts):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for i in range(len(self.loads)):
            await self._stop_replica(i)

    async def crash(self, i: int) -> None:
        """Kill replica i now; it refuses connections for restart_delay_s, then comes back."""
        load = self.loads[i]
        if not load.up or self._stopping:
            return
        load.mark_crashed()
        await self._stop_replica(i)
        await asyncio.sleep(self.options.restart_delay_s)
        if not self._stopping:
            await self._start_replica(i)

    def _crash_hook(self, i: int) -> Callable[[], None]:
        """What a replica's load calls when its memory budget is blown: crash in the background."""

        def hook() -> None:
            task = asyncio.get_running_loop().create_task(self.crash(i))
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

        return hook

    async def _start_replica(self, i: int) -> None:
        load = self.loads[i]
        runner = web.AppRunner(
            self._app_factory(load),
            handler_cancellation=True,  # a dropped client ends its handler, as in Go's net/http
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
            access_log=None,
        )
        await runner.setup()
        site = web.TCPSite(
            runner, self.options.host, self._ports[i], ssl_context=self._ssl_context, reuse_address=True
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        # Port 0 means "any": keep the chosen port so a restart comes back on the same one.
        self._ports[i] = _bound_port(runner, self._ports[i])
        self._runners[i] = runner
        load.mark_up()

    async def _stop_replica(self, i: int) -> None:
        runner, self._runners[i] = self._runners[i], None
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()  # stop listening first: new connections are refused from here on
        if runner.server is not None:
            for conn in runner.server.connections:
                if conn.transport is not None:
                    conn.transport.abort()
        await runner.cleanup()


def _bound_port(runner: web.AppRunner, default: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return default
