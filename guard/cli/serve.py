"""`guard serve`: read and validate the settings, then run the proxy until SIGTERM.

Bad settings print every problem (file and field) and exit 1 before anything listens. This module
only parses the command line; it must never build proxy objects itself (`guard.process.wiring` does).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from guard import settings as settings_module
from guard.kube.errors import ConfigError
from guard.process import workers
from guard.process.server import GuardServer
from guard.telemetry import logs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="guard.yaml settings file")
    parser.add_argument("--listen", metavar="ADDR", help="override `listen` (host:port; port 0 = any free)")
    parser.add_argument("--admin-listen", metavar="ADDR", help="override `admin` (host:port)")
    parser.add_argument("--redis", metavar="URL", help="override `redis` (redis:// or rediss:// URL)")
    parser.add_argument("--workers", type=_positive, default=1, metavar="N",
                        help="worker processes sharing the listen port (default 1); on the embedded "
                             "store each enforces 1/N of every quota")
    parser.add_argument("--log-level", choices=logs.LEVELS, default="info",
                        help="least severe of guard's own log lines to write (default info)")
    parser.add_argument("--log-format", choices=logs.FORMATS, default="text",
                        help="guard's own log on standard error: text, or one JSON object per line "
                             "(the access log is JSON lines either way)")


def run(args: argparse.Namespace) -> int:
    overrides = {"listen": args.listen, "admin": args.admin_listen, "redis": args.redis}
    try:
        settings = settings_module.load(args.config, overrides=overrides)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return 1
    logs.configure(args.log_level, args.log_format)
    raise_open_files_limit()
    if args.workers > 1:
        listen = settings.listen
        return workers.supervise(listen.host, listen.port, args.workers, lambda spec, port: _serve(
            args.config, GuardServer(settings, path=Path(args.config), overrides=overrides, worker=spec,
                                     port=port)))
    return _serve(args.config, GuardServer(settings, path=Path(args.config), overrides=overrides))


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard one, as Go programs and nginx do: every client
    connection and every watch's upstream connection is a file, and the usual soft limit of 1,024
    would stop guard at ~500 watches. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
    return hard


def _serve(config: str, server: GuardServer) -> int:
    try:
        _event_loop_runner()(server.run())
    except ConfigError as e:  # a credential file named by valid settings could not be read
        for problem in e.problems:
            print(f"{config}: {problem}", file=sys.stderr)
        return 1
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop when installed (a faster event loop), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run
