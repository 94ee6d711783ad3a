"""Real redis-server processes for tests: a single node (plain or TLS), a 3-master Redis Cluster,
or a Sentinel group (a master, replicas and `redis-server --sentinel` processes) on free ports.

Each server can be killed, paused (SIGSTOP), resumed (SIGCONT) and restarted on the same port.
Every process started here is stopped by the fixtures, whatever the test did. Use it with
`from tests.redis_servers import redis_server, redis_cluster, redis_sentinel` (fixtures) or the
classes directly.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from chaos.ports import free_ports

REDIS_SERVER = shutil.which("redis-server") or "redis-server"
REDIS_CLI = shutil.which("redis-cli") or "redis-cli"


def free_port(*, with_bus: bool = False) -> int:
    """A loopback port free now (and, for Cluster nodes, port + 10000 too: the cluster bus)."""
    return free_ports(2, step=10000) if with_bus else free_ports(1)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS redis-server: its certificate and key, and the CA it trusts for clients."""

    cert: str
    key: str
    ca: str
    client_cert: str | None = None
    """With `client_key`: require client certificates (mutual TLS); the test tools present this one."""
    client_key: str | None = None

    @property
    def auth_clients(self) -> bool:
        return self.client_cert is not None


def ping(port: int, timeout: float = 0.2, *, tls: TlsFiles | None = None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            s = raw
            if tls is not None:
                context = ssl.create_default_context(cafile=tls.ca)
                if tls.client_cert is not None:
                    context.load_cert_chain(tls.client_cert, tls.client_key)
                s = context.wrap_socket(raw, server_hostname="127.0.0.1")
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _tls_config(tls: TlsFiles, port: int) -> list[str]:
    """Config lines for a TLS-only server (or sentinel) that also replicates over TLS."""
    return ["port 0", f"tls-port {port}", f"tls-cert-file {tls.cert}", f"tls-key-file {tls.key}",
            f"tls-ca-cert-file {tls.ca}", f"tls-auth-clients {'yes' if tls.auth_clients else 'no'}",
            "tls-replication yes"]


def _tls_cli(tls: TlsFiles | None) -> list[str]:
    if tls is None:
        return []
    args = ["--tls", "--cacert", tls.ca]
    if tls.client_cert is not None and tls.client_key is not None:
        args += ["--cert", tls.client_cert, "--key", tls.client_key]
    return args


class RedisServer:
    """One redis-server on loopback, with no persistence; with `tls`, it listens only on a TLS
    port; with `replica_of`, it replicates the master on that port."""

    def __init__(self, *, port: int | None = None, cluster: bool = False,
                 directory: str | None = None, tls: TlsFiles | None = None,
                 replica_of: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.cluster = cluster
        self.extra = extra
        """More redis-server arguments, e.g. `--rename-command FCALL ""` to look like Redis 6."""
        self.port = port or free_port(with_bus=cluster)
        self.dir = directory or tempfile.mkdtemp(prefix="guard-redis-")
        self.tls = tls
        self.replica_of = replica_of
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def _args(self) -> list[str]:
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            listen = [arg for line in _tls_config(self.tls, self.port)
                      for arg in (f"--{line.split()[0]}", line.split()[1])]
        args = [REDIS_SERVER, *listen, "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--protected-mode", "no",
                "--repl-diskless-sync-delay", "0"]  # a replica syncs at once, not after 5 s
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf",
                     "--cluster-node-timeout", "2000"]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        return [*args, *self.extra]

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if ping(self.port, tls=self.tls):
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
        out = subprocess.run([REDIS_CLI, "-p", str(self.port), *_tls_cli(self.tls), *args],
                             capture_output=True, timeout=10, check=True)
        return out.stdout.decode()

    def info(self, section: str) -> dict[str, str]:
        """`INFO section` as a mapping, e.g. info("replication")["role"] == "master"."""
        lines = self.cli("INFO", section).splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))

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


class SentinelServer:
    """One `redis-server sentinel.conf --sentinel` watching `master` (quick timeouts for tests)."""

    def __init__(self, directory: str, tls: TlsFiles | None = None) -> None:
        self.port = free_port()
        self.tls = tls
        self.id = os.urandom(20).hex()
        self.config = os.path.join(directory, f"sentinel-{self.port}.conf")
        self.proc: subprocess.Popen[bytes] | None = None

    def configure(self, name: str, master_port: int, quorum: int, *, replicas: list[int],
                  peers: list[SentinelServer]) -> None:
        """Write the config; naming the replicas and the other sentinels up front spares the
        seconds sentinels otherwise spend discovering each other by hello messages."""
        listen = _tls_config(self.tls, self.port) if self.tls else [f"port {self.port}"]
        lines = [*listen, "bind 127.0.0.1", "protected-mode no",
                 f"dir {os.path.dirname(self.config)}", f"sentinel myid {self.id}",
                 f"sentinel monitor {name} 127.0.0.1 {master_port} {quorum}",
                 f"sentinel down-after-milliseconds {name} 400",
                 f"sentinel failover-timeout {name} 3000",
                 f"sentinel parallel-syncs {name} 1"]
        lines += [f"sentinel known-replica {name} 127.0.0.1 {port}" for port in replicas]
        lines += [f"sentinel known-sentinel {name} 127.0.0.1 {peer.port} {peer.id}"
                  for peer in peers if peer is not self]
        with open(self.config, "w") as f:  # sentinel rewrites its config file: it must be writable
            f.write("\n".join(lines) + "\n")

    def start(self) -> SentinelServer:
        self.proc = subprocess.Popen([REDIS_SERVER, self.config, "--sentinel"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_until(lambda: ping(self.port, tls=self.tls), timeout=5):
            self.kill()
            raise RuntimeError(f"redis sentinel did not start on port {self.port}")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def cli(self, *args: str) -> list[str]:
        out = subprocess.run([REDIS_CLI, "-p", str(self.port), *_tls_cli(self.tls), *args],
                             capture_output=True, timeout=10, check=True)
        return out.stdout.decode().split()


class RedisSentinelGroup:
    """A master, `replicas` replicas of it and `sentinels` sentinels monitoring it as `name`.

    `start` returns once every replica is in sync and every sentinel knows every replica and the
    other sentinels, so that killing the master is followed by a failover."""

    def __init__(self, *, replicas: int = 1, sentinels: int = 3, name: str = "mymaster",
                 tls: TlsFiles | None = None) -> None:
        self.name = name
        self.directory = tempfile.mkdtemp(prefix="guard-rsentinel-")
        self.master = RedisServer(directory=self.directory, tls=tls)
        self.replicas = [RedisServer(directory=self.directory, replica_of=self.master.port, tls=tls)
                         for _ in range(replicas)]
        self.sentinels = [SentinelServer(self.directory, tls) for _ in range(sentinels)]
        for sentinel in self.sentinels:
            sentinel.configure(name, self.master.port, sentinels // 2 + 1,
                               replicas=[r.port for r in self.replicas], peers=self.sentinels)

    @property
    def nodes(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    @property
    def addresses(self) -> list[str]:
        """The sentinels' `host:port`, as guard's `redis.sentinel.addresses` takes them."""
        return [f"127.0.0.1:{s.port}" for s in self.sentinels]

    def start(self) -> RedisSentinelGroup:
        self.master.start()
        for replica in self.replicas:
            replica.start()
        if not wait_until(lambda: all(r.info("replication").get("master_link_status") == "up"
                                      for r in self.replicas), timeout=10):
            raise RuntimeError("redis replicas did not sync with the master")
        for sentinel in self.sentinels:
            sentinel.start()
        if not wait_until(self._sentinels_ready, timeout=15, step=0.1):
            raise RuntimeError("redis sentinels did not discover the replicas and each other")
        return self

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            fields = sentinel.cli("SENTINEL", "MASTER", self.name)
            state = dict(zip(fields[::2], fields[1::2], strict=False))
            if (int(state.get("num-slaves", 0)) < len(self.replicas)
                    or int(state.get("num-other-sentinels", 0)) < len(self.sentinels) - 1):
                return False
        return True

    def master_port(self) -> int:
        """The master's port as the first live sentinel reports it."""
        for sentinel in self.sentinels:
            if sentinel.proc is not None:
                return int(sentinel.cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)[1])
        raise RuntimeError("no sentinel is running")

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def wait_failover(self, old_port: int, *, timeout: float = 20.0) -> RedisServer:
        """Poll until every sentinel names a new master and that node says it is one."""
        def promoted() -> bool:
            ports = {int(s.cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)[1])
                     for s in self.sentinels if s.proc is not None}
            if len(ports) != 1 or old_port in ports:
                return False
            return self.node(ports.pop()).info("replication").get("role") == "master"
        if not wait_until(promoted, timeout=timeout, step=0.1):
            raise RuntimeError("sentinels did not fail over")
        return self.node(self.master_port())

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.kill()
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def require_redis() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make system-deps)")


def tls_supported() -> bool:
    """Whether this redis-server has TLS built in: such a build tries to configure TLS (and fails
    on the missing files); one without TLS refuses `tls-port` as a bad directive."""
    try:
        done = subprocess.run([REDIS_SERVER, "--port", "0", "--tls-port", str(free_port()),
                               "--tls-cert-file", "/nonexistent.crt", "--tls-key-file", "/nonexistent.key",
                               "--tls-ca-cert-file", "/nonexistent.ca", "--save", ""],
                              capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"Failed to configure TLS" in done.stdout + done.stderr


def require_tls() -> None:
    require_redis()
    if not tls_supported():
        pytest.skip("this redis-server was built without TLS (no --tls-port)")


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


@pytest.fixture
def redis_sentinel() -> Iterator[RedisSentinelGroup]:
    """A master, one replica and three sentinels, fresh per test (a failover changes them)."""
    require_redis()
    group = RedisSentinelGroup()
    try:
        yield group.start()
    finally:
        group.stop()


def wait_until(predicate: object, *, timeout: float = 5.0, step: float = 0.02) -> bool:
    """Poll `predicate()` until true; for setup only, never as a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(step)
    return False


__all__ = ["RedisClusterServers", "RedisSentinelGroup", "RedisServer", "SentinelServer", "TlsFiles",
           "free_port", "redis_cluster", "redis_sentinel", "redis_server", "require_tls", "tls_supported"]
