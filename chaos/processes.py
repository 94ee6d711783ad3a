"""Start, signal and always clean up the processes a chaos run needs: the simulated api-server,
guard replicas and redis-server, each on free loopback ports.

Every process is started in its own session and registered with a `Processes` group that kills
what is still running on exit, even when the run fails or is interrupted. This module never
sends a signal to a process it did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from chaos.ports import free_port, free_ports

READY_TIMEOUT_S = 30.0
SIM_COMMAND = [sys.executable, "-m", "chaos", "sim"]


@dataclass
class Proc:
    """One started process: its role name, the Popen handle and where its output goes."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    urls: list[str] = field(default_factory=list)
    admin_url: str = ""

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGCONT)  # a stopped process must be able to die
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)

    def stop(self) -> None:
        """Terminate gracefully, then kill if it lingers."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Processes:
    """The processes of one run. Use as a context manager: everything is killed on the way out."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def spawn(self, name: str, argv: Sequence[str]) -> Proc:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.workdir,
            )  # fmt: skip
        proc = Proc(name=name, argv=list(argv), popen=popen, log_path=log_path)
        self.procs.append(proc)
        return proc

    def find(self, name: str) -> Proc:
        for proc in self.procs:
            if proc.name == name:
                return proc
        raise KeyError(name)

    async def respawn(self, proc: Proc) -> Proc:
        """Start a dead process again with the same command line (same ports)."""
        proc.kill()
        self.procs.remove(proc)
        fresh = self.spawn(proc.name, proc.argv)
        fresh.urls, fresh.admin_url = proc.urls, proc.admin_url
        return fresh


async def wait_for_line(proc: Proc, needle: str, count: int = 1, timeout: float = READY_TIMEOUT_S) -> None:
    """Wait until the process's log holds `needle` `count` times (e.g. one `serving` per replica)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        with contextlib.suppress(OSError):
            if proc.log_path.read_text(errors="replace").count(needle) >= count:
                return
        if not proc.alive:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready after {timeout:g}s:\n{proc.log_tail()}")


async def wait_for_http(proc: Proc, url: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Wait until `url` answers with any HTTP status below 500."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while loop.time() < deadline:
            if not proc.alive:
                raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} not answering {url} after {timeout:g}s:\n{proc.log_tail()}")


async def start_sim(procs: Processes, args: Sequence[str], replicas: int) -> Proc:
    base = free_ports(replicas)
    argv = [*SIM_COMMAND, "--listen", f"127.0.0.1:{base}", "--replicas", str(replicas)]
    proc = procs.spawn("sim", [*argv, *args])
    await wait_for_line(proc, "serving ", count=replicas)
    proc.urls = [f"http://127.0.0.1:{base + i}" for i in range(replicas)]
    return proc


async def start_redis(procs: Processes) -> Proc:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = procs.spawn("redis", argv)
    await wait_for_line(proc, "Ready to accept connections")
    proc.urls = [f"redis://127.0.0.1:{port}/0"]
    return proc


async def start_guard(procs: Processes, name: str, config: Path, listen: int, admin: int) -> Proc:
    argv = [sys.executable, "-m", "guard.cli", "serve", "--config", str(config)]
    proc = procs.spawn(name, argv)
    proc.urls, proc.admin_url = [f"http://127.0.0.1:{listen}"], f"http://127.0.0.1:{admin}"
    await wait_for_http(proc, f"{proc.admin_url}/healthz")
    return proc
