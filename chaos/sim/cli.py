"""`python -m chaos sim`: parse the options, build the simulation, serve until SIGINT/SIGTERM.

Prints one `serving <url>` line per replica (and `ca-file <path>` when it generated a certificate),
flushed, so that scripts and tests can wait for it. Bad input is one clear line and exit 2. It must
never leave a half-written file or a listening socket behind.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from chaos.sim import certs, controllers
from chaos.sim.app import build_app
from chaos.sim.authn import TokenFileError
from chaos.sim.bootstrap import BootstrapError
from chaos.sim.options import SimOptions
from chaos.sim.simulation import Simulation, optional_module


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SimOptions()
    add = parser.add_argument
    add(
        "--listen",
        type=_listen,
        default=(d.host, d.port),
        metavar="HOST:PORT",
        help="address of replica 0; replica i listens on PORT+i (default 127.0.0.1:6443)",
    )
    add("--replicas", type=int, default=d.replicas, help="api-server replicas sharing one store")
    add("--tls", action="store_true", help="serve HTTPS (certificate generated unless --cert-file)")
    add("--cert-file", type=Path, help="serving certificate (PEM)")
    add("--key-file", type=Path, help="serving key (PEM)")
    add("--cert-dir", type=Path, help="where a generated CA and certificate are written")
    add("--token-file", type=Path, help='static tokens: token,user,uid,"group1,group2"')
    add("--client-ca", type=Path, help="CA of client certificates (CN = user, O = groups)")
    add("--anonymous", action="store_true", help="allow unauthenticated requests as system:anonymous")
    add("--bootstrap", type=Path, help="YAML of objects (RBAC, namespaces) to create at start")
    add("--system-pods", action="store_true", help="run kube-system's pods (CoreDNS, kube-proxy, ...)")
    add("--seed-objects", type=int, default=d.seed_objects, help="pods to pre-create")
    add("--seed-object-bytes", type=int, default=d.seed_object_bytes, help="approximate size of each")
    add("--max-readonly-inflight", type=int, default=d.max_readonly_inflight,
        help="read requests in flight per replica before 429 (the api-server's --max-requests-inflight)")
    add("--max-mutating-inflight", type=int, default=d.max_mutating_inflight,
        help="writes in flight per replica before 429 (--max-mutating-requests-inflight)")
    add("--base-service-ms", type=float, default=d.base_service_ms,
        help="service time of a request on an idle replica")
    add("--per-object-service-us", type=float, default=d.per_object_service_us,
        help="extra service time per object a LIST returns")
    add("--memory-budget-mb", type=float, default=d.memory_budget_mb, help="0 = never crash")
    add("--restart-delay-s", type=float, default=d.restart_delay_s,
        help="how long a crashed replica refuses connections")
    add("--cold-start-s", type=float, default=d.cold_start_s, help="watch cache cold after a start (s)")
    add("--cold-list-factor", type=float, default=d.cold_list_factor, help="LIST time, memory x when cold")
    add("--watch-cache-window", type=int, default=d.watch_cache_window,
        help="past events a watch may resume from before 410 Gone")
    add("--bookmark-interval-s", type=float, default=d.bookmark_interval_s,
        help="seconds between BOOKMARKs of watches that allow them")


def options_from(args: argparse.Namespace) -> SimOptions:
    host, port = args.listen
    if args.replicas < 1:
        raise ValueError("--replicas must be at least 1")
    if bool(args.cert_file) != bool(args.key_file):
        raise ValueError("--cert-file and --key-file go together")
    for flag, path in (
        ("--cert-file", args.cert_file),
        ("--key-file", args.key_file),
        ("--client-ca", args.client_ca),
    ):
        if path is not None and not path.is_file():
            raise ValueError(f"{flag}: cannot read {path}")
    keys = (
        "replicas",
        "token_file",
        "client_ca",
        "anonymous",
        "bootstrap",
        "system_pods",
        "seed_objects",
        "seed_object_bytes",
        "max_readonly_inflight",
        "max_mutating_inflight",
        "base_service_ms",
        "per_object_service_us",
        "memory_budget_mb",
        "restart_delay_s",
        "cold_start_s",
        "cold_list_factor",
        "watch_cache_window",
        "bookmark_interval_s",
        "cert_file",
        "key_file",
        "cert_dir",
    )
    tls = args.tls or bool(args.cert_file)
    return SimOptions(host=host, port=port, tls=tls, **{k: getattr(args, k) for k in keys})


def _ssl(options: SimOptions) -> tuple[ssl.SSLContext | None, Path | None]:
    if not options.tls:
        return None, None
    if options.cert_file and options.key_file:
        return certs.server_context(options.cert_file, options.key_file, options.client_ca), None
    directory = options.cert_dir or Path(tempfile.mkdtemp(prefix="chaos-sim-"))
    ca, cert, key = certs.generate(directory, ("127.0.0.1", "localhost", options.host))
    return certs.server_context(cert, key, options.client_ca), ca


async def _serve(
    sim: Simulation, options: SimOptions, context: ssl.SSLContext | None
) -> tuple[list[Any], list[str]]:
    """Start every replica; return what must be stopped and the URLs served."""
    replicas = optional_module("chaos.sim.replicas")
    if replicas is not None:
        replica_set = replicas.ReplicaSet(options, lambda load: build_app(sim, load), context)
        await replica_set.start()
        return [replica_set], list(replica_set.urls)
    scheme = "https" if context else "http"
    runners = []
    for port in options.replica_ports():
        runner = web.AppRunner(build_app(sim), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, options.host, port, ssl_context=context).start()
        runners.append(runner)
    return runners, [f"{scheme}://{options.host}:{port}" for port in options.replica_ports()]


async def _main(options: SimOptions) -> int:
    sim = Simulation.from_options(options)
    context, ca = _ssl(options)
    stoppables, urls = await _serve(sim, options, context)
    for url in urls:
        print(f"serving {url}", flush=True)
    if ca is not None:
        print(f"ca-file {ca}", flush=True)
    heartbeat = asyncio.get_running_loop().create_task(controllers.heartbeat(sim.store))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    heartbeat.cancel()
    for item in stoppables:
        await (item.stop() if hasattr(item, "stop") else item.cleanup())
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from(args)
        return asyncio.run(_main(options))
    except (ValueError, TokenFileError, BootstrapError, OSError) as e:
        print(f"chaos sim: {e}", file=sys.stderr, flush=True)
        return 2
