"""Real redis-server processes for tests: a single node or a 3-master Redis Cluster on free ports.

Each server can be killed, paused (SIGSTOP), resumed (SIGCONT) and restarted on the same port.
Every process started here is stopped by the fixtures, whatever the test did. Use it with
`from tests.redis_servers import redis_server, redis_cluster` (fixtures) or the classes directly.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

REDIS_SERVER = shutil.which("redis-server") or "redis-server"
REDIS_CLI = shutil.which("redis-cli") or "redis-cli"


def free_port(*, with_bus: bool = False) -> int:
    """A loopback port free now (and, for Cluster nodes, port + 10000 too)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not with_bus or port + 10000 >= 65536:
            if not with_bus:
                return port
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair found")


def ping(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server on loopback, with no persistence."""

    def __init__(self, *, port: int | None = None, cluster: bool = False,
                 directory: str | None = None) -> None:
        self.cluster = cluster
        self.port = port or free_port(with_bus=cluster)
        self.dir = directory or tempfile.mkdtemp(prefix="guard-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--protected-mode", "no"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf",
                     "--cluster-node-timeout", "2000"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if ping(self.port):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: connections are refused at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the port stays open, nothing answers."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()

    def cli(self, *args: str) -> str:
        out = subprocess.run([REDIS_CLI, "-p", str(self.port), *args], capture_output=True,
                             timeout=10, check=True)
        return out.stdout.decode()

    def commandstats(self) -> dict[str, int]:
        """calls per command from INFO commandstats, e.g. {'fcall': 120, 'ping': 3}."""
        stats: dict[str, int] = {}
        for line in self.cli("INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_"):
                name, _, rest = line[len("cmdstat_"):].partition(":")
                fields = dict(item.split("=", 1) for item in rest.split(","))
                stats[name] = int(fields["calls"])
        return stats


class RedisClusterServers:
    """Three masters joined with `redis-cli --cluster create`, no replicas."""

    def __init__(self, masters: int = 3) -> None:
        self.directory = tempfile.mkdtemp(prefix="guard-rcluster-")
        self.nodes = [RedisServer(cluster=True, directory=self.directory) for _ in range(masters)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run([REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                        "--cluster-yes"], capture_output=True, timeout=30, check=True)
        for _ in range(250):
            if all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes):
                return self
            time.sleep(0.02)
        raise RuntimeError("redis cluster did not become ready")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def require_redis() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make system-deps)")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh single redis-server per test."""
    require_redis()
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A 3-master Redis Cluster shared by a module's tests."""
    require_redis()
    servers = RedisClusterServers()
    try:
        yield servers.start()
    finally:
        servers.stop()


def wait_until(predicate: object, *, timeout: float = 5.0, step: float = 0.02) -> bool:
    """Poll `predicate()` until true; for setup only, never as a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(step)
    return False


__all__ = ["RedisClusterServers", "RedisServer", "free_port", "redis_cluster", "redis_server"]
