"""Child processes of the benchmark: start them with logs in a work directory and a raised file
limit, wait until they listen, measure their resident memory, and stop every one of them.
It must never leave a process running after `Processes.close()`.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class Skip(Exception):
    """This part cannot run on this machine; the message says why."""


WANTED_FILES = 65536
"""Open files the benchmark asks for: 10,000 watches through a proxy hold ~20,000 sockets there,
and the process opening them 10,000 more."""


def raise_file_limit() -> int:
    """Raise the open-files limit for this process and the ones it starts: the hard limit too
    when allowed (root), else the soft one up to the hard one. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < WANTED_FILES:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (WANTED_FILES, WANTED_FILES))
            return WANTED_FILES
        except (ValueError, OSError):
            pass
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def can_connect(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (guard's workers are children)."""
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (threads included), from
    /proc: what a target spent, whoever of its processes spent it."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
    return found


@dataclass
class Processes:
    """Every process the benchmark started, so that all of them are stopped at the end."""

    workdir: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        if env is None:
            # Children run in the work directory; they still need to import bench and guard.
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            }
        proc = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=raise_file_limit, start_new_session=True, env=env, cwd=self.workdir,
        )  # fmt: skip
        self.started.append(proc)
        return proc

    def wait_listening(
        self, name: str, proc: subprocess.Popen[bytes], port: int, timeout: float = 20
    ) -> None:
        """Wait until `port` accepts connections; Skip with the log's last line if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise Skip(f"exited {proc.returncode}: {self.last_log_line(name)}")
            if can_connect(port):
                return
            time.sleep(0.05)
        raise Skip(f"not listening after {timeout:.0f}s: {self.last_log_line(name)}")

    def last_log_line(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return lines[-1][:160] if lines else "(no output)"

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                # Each child leads its own session, so its workers get the signal too.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
