"""`guard serve --workers N`: N worker processes serve one listen port, each with its own event loop.

The parent reserves the port (bound, never listening) and forks the workers before any event loop
exists; each worker binds its own listening socket to that port with SO_REUSEPORT, so the kernel
spreads connections across workers by hash instead of waking them all for every accept. Worker 0
serves the admin listener; every other worker serves its admin app on a unix socket in a private
directory (mode 0700) that the parent creates and removes, so worker 0 can gather their /metrics
and debug pages (`guard.telemetry.siblings`). The parent prints the `guard serving` line once every worker
listens, passes SIGTERM/SIGINT/SIGHUP on to them, and exits when all have stopped; if one dies on
its own, the parent stops the others and exits non-zero (a supervisor restarts the whole unit).

Admission state lives in each process (on the embedded store each enforces a share of every quota:
guard.admission.shares). This module must never serve a request in the parent.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)
ORPHAN_CHECK = 1.0
"""Seconds between a worker's checks that its parent is still alive."""


@dataclass(frozen=True)
class WorkerSpec:
    """What one forked worker needs to know about its place among the others."""

    index: int
    count: int
    ready_fd: int
    parent: int
    sockets: str
    """The parent's private directory (mode 0700) holding each worker's admin unix socket."""

    @property
    def serves_admin(self) -> bool:
        """True for the worker on the admin address; the others serve theirs on `admin_socket`."""
        return self.index == 0

    def admin_socket(self, index: int) -> str:
        """Where worker `index` serves its admin app when it is not the one on the admin address."""
        return os.path.join(self.sockets, f"admin-{index}.sock")

    def siblings(self) -> dict[int, str]:
        """Every other worker's admin socket, by worker index."""
        return {i: self.admin_socket(i) for i in range(self.count) if i != self.index}

    def report(self, line: str) -> None:
        """Tell the parent this worker listens (one line; worker 0's carries the addresses)."""
        os.write(self.ready_fd, (line.strip() + "\n").encode())


def listen_socket(host: str, port: int, *, reuse_port: bool = True) -> socket.socket:
    """A socket bound to (host, port), in the port's SO_REUSEPORT group unless told otherwise (one
    process alone); listening is up to the caller."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def supervise(host: str, port: int, count: int, run_worker: Callable[[WorkerSpec, int], int]) -> int:
    """Fork `count` workers serving (host, port); return the exit code for the parent.

    `run_worker(spec, port)` runs in each child and returns its exit code."""
    reserved = listen_socket(host, port)  # holds the port (port 0 becomes a real one); never listens
    sockets = tempfile.mkdtemp(prefix="guard-workers-")  # mode 0700: only this user reaches the sockets
    try:
        return _fork(reserved, sockets, count, run_worker)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


def _fork(reserved: socket.socket, sockets: str, count: int,
          run_worker: Callable[[WorkerSpec, int], int]) -> int:
    bound = reserved.getsockname()[1]
    read_fd, write_fd = os.pipe()
    children: dict[int, int] = {}
    for index in range(count):
        pid = os.fork()
        if pid == 0:  # the worker: never returns to the caller's stack (nor to its cleanup)
            os.close(read_fd)
            reserved.close()
            spec = WorkerSpec(index=index, count=count, ready_fd=write_fd, parent=os.getppid(),
                              sockets=sockets)
            code = 1
            try:
                code = run_worker(spec, bound)
            finally:
                sys.stdout.flush()
                os._exit(code)
        children[pid] = index
    os.close(write_fd)
    return _parent(children, read_fd, reserved)


def _parent(children: dict[int, int], read_fd: int, reserved: socket.socket) -> int:
    parent = _Parent(children)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, parent.forward)
    announce = parent.await_ready(read_fd)
    if announce is not None:
        print(announce, flush=True)
    while parent.children:
        parent.reap(os.wait())
    reserved.close()
    return parent.code


class _Parent:
    """The parent's view of its workers: who is alive, whether it is stopping, the exit code."""

    def __init__(self, children: dict[int, int]) -> None:
        self.children = children
        self.stopping = False
        self.code = 0

    def forward(self, signum: int, _frame: object) -> None:
        self.stopping = self.stopping or signum != signal.SIGHUP
        _signal_all(self.children, signum)

    def reap(self, waited: tuple[int, int]) -> None:
        pid, status = waited
        if self.children.pop(pid, None) is None:
            return
        if not self.stopping:  # a worker died on its own: stop the rest and report failure
            log.error("worker %d exited unexpectedly (%d); stopping the others", pid,
                      os.waitstatus_to_exitcode(status))
            self.stopping, self.code = True, 1
            _signal_all(self.children, signal.SIGTERM)
        elif os.waitstatus_to_exitcode(status) != 0:
            self.code = 1

    def await_ready(self, read_fd: int) -> str | None:
        """Each worker reports one line; worker 0's (first field `0`) is the announcement.
        None when a worker died (or a signal came) before all of them listened."""
        count, buffered = len(self.children), b""
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while buffered.count(b"\n") < count and not self.stopping:
                if select.select([pipe], [], [], ORPHAN_CHECK)[0]:
                    buffered += pipe.read(4096) or b""
                while self.children and (waited := os.waitpid(-1, os.WNOHANG))[0]:
                    self.reap(waited)
        if buffered.count(b"\n") < count:
            return None
        lines = [line.partition(" ") for line in buffered.decode().splitlines()]
        return next((rest for index, _, rest in lines if index == "0"), None)


def _signal_all(children: dict[int, int], signum: int) -> None:
    for pid in children:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def parent_gone(spec: WorkerSpec) -> bool:
    """True once the parent has exited (the worker was re-parented): time to stop."""
    return os.getppid() != spec.parent
