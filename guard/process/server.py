"""Listeners and lifecycle: the main listener (HTTP or TLS with an optional client CA), the admin
listener, SIGTERM drain and SIGHUP reload.

SIGTERM stops accepting, ends watches cleanly and gives ordinary requests `limits.drainTimeout`
seconds. SIGHUP re-reads the settings file; an invalid file is logged (file and field) and the running
settings stay. This module must never exit the process on a bad reload.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from guard import settings as settings_module
from guard.http.server import Limits
from guard.http.server import Server as HttpServer
from guard.kube.errors import ConfigError
from guard.process import collector, observing, wiring
from guard.process.workers import ORPHAN_CHECK, WorkerSpec, listen_socket, parent_gone
from guard.proxy.pipeline import Proxy
from guard.proxy.runtime import Runtime, Serving, in_flight
from guard.routing.dispatch import remember_server_names
from guard.settings import LimitSettings, Settings, TLSSettings
from guard.telemetry.admin import AdminPages, serve_siblings
from guard.telemetry.metrics import GuardMetrics
from guard.telemetry.siblings import Siblings

log = logging.getLogger(__name__)
OLD_RUNTIME_GRACE = 300.0
"""Seconds a replaced runtime's connection pools stay open for the requests still using them."""


def serving_context(tls: TLSSettings, *, http2: bool = True) -> ssl.SSLContext:
    """TLS for the main listener; client certificates optional (token users present none). ALPN
    offers `h2` (guard.http.h2connection) unless `http2` is off, and `http/1.1`."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    if tls.client_ca is not None:
        ctx.load_verify_locations(cafile=str(tls.client_ca))
        ctx.verify_mode = ssl.CERT_OPTIONAL
    remember_server_names(ctx)  # guard.routing: clusters chosen by the TLS server name
    return ctx


class GuardServer:
    """One guard process: build, listen, reload, drain."""

    def __init__(self, settings: Settings, *, path: Path | None = None,
                 overrides: Mapping[str, object] | None = None, worker: WorkerSpec | None = None,
                 port: int | None = None) -> None:
        self.settings = settings
        self.worker = worker
        """Set when this process is one of `--workers N`: it then shares `port` with the others."""
        self._port = port
        self.path = path
        self.overrides = dict(overrides or {})
        self.metrics = GuardMetrics()
        self.pages = AdminPages()
        self.serving: Serving | None = None
        self.shared: wiring.ProcessState | None = None
        """The quota store (and Redis fleet) of this process; kept across reloads."""
        self.proxy: Proxy | None = None
        self._runners: list[web.BaseRunner] = []
        self._main: HttpServer | None = None
        self._listener: asyncio.Server | None = None
        self._tls: ssl.SSLContext | None = None
        self._stopped = asyncio.Event()
        self.addresses: dict[str, str] = {}

    async def start(self) -> None:
        self.shared = await wiring.build_process_state(self.settings, workers=self._workers)
        self.serving = Serving(await wiring.build_runtime(self.settings, workers=self._workers,
                                                        shared=self.shared))
        admin, self.proxy = observing.build_apps(self.serving, self.metrics, self.pages, shared=self.shared)
        s = self.settings
        self._tls = serving_context(s.tls, http2=s.limits.http2_max_streams > 0) if s.tls else None
        try:
            self.addresses["main"] = await self._listen_main(self.proxy)
        except OSError as e:
            raise ConfigError([f"listen: cannot listen on {s.listen}: {e.strerror or e}"]) from e
        if s.admin is not None:
            try:
                await self._serve_admin(admin, s.admin.host, s.admin.port)
            except OSError as e:
                raise ConfigError([f"admin: cannot listen on {s.admin.address}: {e.strerror or e}"]) from e

    async def _listen_main(self, proxy: Proxy) -> str:
        """The main listener: guard.http.server on its own socket (shared with the other workers
        through SO_REUSEPORT under `--workers`)."""
        s = self.settings
        limits = s.limits
        self._main = HttpServer(proxy.handle, _connection_limits(limits), tls=self._tls)
        self.metrics.add_counters(self._main.figures, "guard_connections", "Client connections")
        loop = asyncio.get_running_loop()
        port = self._port if self.worker is not None and self._port is not None else s.listen.port
        if self._tls is not None:  # guard accepts itself, so a connection counts before its handshake
            sock = listen_socket(s.listen.host, port, reuse_port=self.worker is not None)
            self._main.accept_tls(sock, backlog=1024)
            return _url("https", sock.getsockname())
        if self.worker is not None:
            sock = listen_socket(s.listen.host, port)
            self._listener = await loop.create_server(self._main, sock=sock, backlog=1024)
        else:
            self._listener = await loop.create_server(self._main, s.listen.host, s.listen.port,
                                                      backlog=1024, reuse_address=True)
        return _url("http", self._listener.sockets[0].getsockname())

    async def _serve_admin(self, application: web.Application, host: str, port: int) -> None:
        """One process, or worker 0: the admin address (worker 0 answering for its siblings too).
        Any other worker: a unix socket in the parent's private directory, for worker 0 to reach."""
        worker = self.worker
        if worker is not None and not worker.serves_admin:
            runner = await self._admin_runner(application)
            await web.UnixSite(runner, worker.admin_socket(worker.index), backlog=128).start()
            return
        if worker is not None:
            serve_siblings(application, Siblings(worker.index, worker.siblings()))
        runner = await self._admin_runner(application)
        await web.TCPSite(runner, host, port, backlog=1024, reuse_address=True).start()
        self.addresses["admin"] = _url("http", runner.addresses[0])

    async def _admin_runner(self, application: web.Application) -> web.AppRunner:
        limits = self.settings.limits
        runner = web.AppRunner(application, access_log=None, handle_signals=False, shutdown_timeout=1.0,
                               keepalive_timeout=limits.idle_timeout)
        await runner.setup()
        _limit_connections(runner, limits.max_connections)
        self._runners.append(runner)
        return runner

    def announce(self) -> None:
        """The line tests and scripts wait for."""
        admin = f" admin {self.addresses['admin']}" if "admin" in self.addresses else ""
        line = f"guard serving {self.addresses['main']}{admin}"
        if self.worker is None:
            print(line, flush=True)
        else:  # the parent announces once every worker listens
            self.worker.report(f"{self.worker.index} {line} workers {self.worker.count}")

    @property
    def _workers(self) -> int:
        return self.worker.count if self.worker is not None else 1

    async def reload(self) -> bool:
        """Re-read the settings file; swap atomically, or keep the running settings when it is bad."""
        if self.path is None or self.serving is None:
            return False
        try:
            fresh = settings_module.load(self.path, overrides=self.overrides)
            self._check_restart_only(fresh)
            runtime = await wiring.build_runtime(fresh, workers=self._workers, shared=self.shared)
        except ConfigError as e:
            for problem in e.problems:
                log.error("reload rejected, keeping the running settings: %s", problem)
            self.metrics.reloads.labels("rejected").inc()
            return False
        old, self.serving.runtime, self.settings = self.serving.runtime, runtime, fresh
        collector.thaw()  # the retired runtime was frozen at start: its cycles must be collectable
        if self._main is not None:
            self._main.limits = _connection_limits(fresh.limits)
        if fresh.tls is not None and self._tls is not None:
            self._tls.load_cert_chain(str(fresh.tls.cert), str(fresh.tls.key))  # new handshakes only
        asyncio.get_running_loop().create_task(_retire(old))
        self.metrics.reloads.labels("applied").inc()
        log.info("reloaded settings from %s", self.path)
        return True

    def _check_restart_only(self, fresh: Settings) -> None:
        old = self.settings
        # The listeners, the store and its Redis live as long as the process.
        restart_only = {"listen": (fresh.listen, old.listen), "redis": (fresh.redis, old.redis),
                        "admin": (fresh.admin and fresh.admin.address, old.admin and old.admin.address)}
        changed = [name for name, (new, was) in restart_only.items() if new != was]
        if (fresh.tls is None) != (self.settings.tls is None):
            changed.append("tls")
        if changed:
            raise ConfigError([f"{fresh.source}: {name}: changes need a restart" for name in changed])

    async def stop(self) -> None:
        """Drain: stop accepting, end watches, let ordinary requests finish, then close."""
        if self.proxy is not None:
            self.proxy.drain()
        if self._listener is not None:
            self._listener.close()
        if self._main is not None:
            self._main.stop_accepting()
            await self._main.shutdown(self.settings.limits.drain_timeout)
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self.serving is not None:
            await wiring.close_runtime(self.serving.runtime)
        if self.shared is not None:
            await self.shared.close()
            self.shared = None

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, reloading on SIGHUP."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopped.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        try:
            await self.start()
        except BaseException:
            await self.stop()  # what was built closes cleanly: no "Unclosed client session" after the error
            raise
        collector.settle()
        self.announce()
        watch = loop.create_task(self._stop_when_orphaned(self.worker)) if self.worker else None
        await self._stopped.wait()
        if watch is not None:
            watch.cancel()
        log.info("draining")
        await self.stop()

    async def _stop_when_orphaned(self, worker: WorkerSpec) -> None:
        """A worker whose parent died (SIGKILL, OOM) stops by itself instead of serving on alone."""
        while not parent_gone(worker):
            await asyncio.sleep(ORPHAN_CHECK)
        log.warning("the parent process is gone; stopping worker %d", worker.index)
        self._stopped.set()


def _url(scheme: str, bound: Any) -> str:
    host = str(bound[0])
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{bound[1]}"


def _connection_limits(limits: LimitSettings) -> Limits:
    return Limits(max_connections=limits.max_connections, max_line=limits.max_header_bytes,
                  idle_timeout=limits.idle_timeout, handshake_timeout=limits.handshake_timeout,
                  body_timeout=limits.body_timeout, write_timeout=limits.write_timeout,
                  http2_max_streams=limits.http2_max_streams,
                  http2_max_header_list=limits.http2_max_header_list_bytes,
                  http2_max_resets=limits.http2_max_resets_per_second,
                  http2_goaway_chance=limits.http2_goaway_chance)


def _limit_connections(runner: web.BaseRunner, most: int) -> None:
    """Close connections accepted beyond `most` at once, before they cost a request's work.

    aiohttp has no such knob; its Server registers each connection through `connection_made`,
    so guard wraps that one call."""
    server: Any = runner.server
    if server is None:
        return
    register = server.connection_made

    def connection_made(handler: Any, transport: asyncio.Transport) -> None:
        register(handler, transport)
        if len(server.connections) > most:
            transport.abort()

    server.connection_made = connection_made


async def _retire(runtime: Runtime) -> None:
    """Close a replaced runtime once its requests are done (watches get at most the grace period)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + OLD_RUNTIME_GRACE
    while loop.time() < deadline and in_flight(runtime):
        await asyncio.sleep(1.0)
    await wiring.close_runtime(runtime)
