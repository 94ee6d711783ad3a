"""The table of things the load generator is pointed at: the static upstream itself (direct), the
peers, and guard in several set-ups. Adding a target is adding a row. A target that cannot run here
(missing program, guard not built yet, an option guard lacks) raises Skip with the reason; it must
never crash the run.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench import guardsetup, h2, peers
from bench.load import BENCH_TOKEN
from bench.procs import Processes, Skip
from chaos.ports import free_port


@dataclass(frozen=True)
class Running:
    """A started target: where to send load, whose memory to read."""

    port: int
    pid: int
    scheme: str = "http"


@dataclass
class Env:
    """What every target is started against: the work directory, the upstream, shared Redis."""

    workdir: Path
    procs: Processes
    upstream: Running = field(default_factory=lambda: Running(0, 0))
    redis_url: str | None = None
    tag: str = ""
    """Prefix of process and log names, so a second set-up of the same target gets its own log."""
    baseline: Path | None = None
    """A checkout of an earlier guard (`--baseline`), measured beside this one in the same run."""

    def program(self, name: str) -> str:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
        if path is None:
            raise Skip(f"{name} not found (scripts/system-deps.sh {name})")
        return path

    def launch(self, name: str, argv: list[str], port: int, *, source: Path | None = None) -> Running:
        """Start `argv` and wait for `port`; `source`: import guard from that checkout instead."""
        env = None if source is None else {**os.environ, "PYTHONPATH": str(source)}
        proc = self.procs.start(self.tag + name, argv, env=env)
        self.procs.wait_listening(self.tag + name, proc, port)
        return Running(port, proc.pid)

    def redis(self) -> str:
        """A redis-server of the benchmark's own on a free port, started on first use."""
        if self.redis_url is None:
            port = free_port()
            argv = [self.program("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            self.launch("redis", [*argv, "--appendonly", "no"], port)
            self.redis_url = f"redis://127.0.0.1:{port}/0"
        return self.redis_url


@dataclass(frozen=True)
class Target:
    name: str
    what: str
    start: Callable[[Env], Running]
    load: str = "wrk"
    """What drives it: wrk (HTTP/1.1), or h2load (HTTP/2, bench.h2)."""


def start_upstream(env: Env) -> Running:
    port = free_port()
    return env.launch("upstream", [sys.executable, "-m", "bench.upstream", "--port", str(port)], port)


def start_nginx_static(env: Env) -> Running:
    return _nginx(env, "nginx-static", lambda prefix, port: peers.nginx_static(prefix, port))


def direct(env: Env) -> Running:
    return env.upstream


def kubectl_proxy(env: Env) -> Running:
    kubectl = env.program("kubectl")
    config = env.workdir / "kubeconfig"
    config.write_text(peers.kubeconfig(env.upstream.port, BENCH_TOKEN))
    port = free_port()
    return env.launch("kubectl-proxy", [kubectl, "proxy", f"--port={port}", f"--kubeconfig={config}"], port)


def _nginx(env: Env, name: str, render: Callable[[Path, int], str]) -> Running:
    nginx = env.program("nginx")
    prefix = env.workdir / name
    prefix.mkdir(exist_ok=True)
    port = free_port()
    (prefix / "nginx.conf").write_text(render(prefix, port))
    return env.launch(
        name, [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"], port
    )


def nginx_proxy(env: Env) -> Running:
    return _nginx(env, "nginx-proxy", lambda prefix, port: peers.nginx_proxy(prefix, port, env.upstream.port))


def haproxy(env: Env) -> Running:
    program = env.program("haproxy")
    port = free_port()
    config = env.workdir / "haproxy.cfg"
    config.write_text(peers.haproxy(port, env.upstream.port))
    return env.launch("haproxy", [program, "-f", str(config), "-db"], port)


def guard(*, policies: bool = False, redis: bool = False, workers: int = 0,
          baseline: bool = False, tls: bool = False, suffix: str = "") -> Callable[[Env], Running]:
    """A guard set-up: example policies or none, embedded store or Redis, default or N workers;
    `baseline`: the guard of the `--baseline` checkout instead of this one; `tls`: HTTPS (ALPN h2
    and http/1.1)."""

    def start(env: Env) -> Running:
        if baseline and env.baseline is None:
            raise Skip("no --baseline checkout given")
        if guardsetup.serve_help() is None:
            raise Skip("`guard serve` is not built yet")
        if workers and not guardsetup.supports("--workers"):
            raise Skip("`guard serve` has no --workers option yet")
        name = "guard" + ("-policies" if policies else "") + ("-redis" if redis else "") + f"-w{workers}" + (
            "-baseline" if baseline else "") + ("-tls" if tls else "") + suffix
        files = h2.tls_files(env.workdir / f"tls{suffix}") if tls else None
        port, admin = free_port(), free_port()
        config = guardsetup.write_config(
            env.workdir / f"{name}.yaml", port=port, admin=admin, upstream=env.upstream.port,
            policies=guardsetup.write_policies(env.workdir / "policies") if policies else None,
            redis=env.redis() if redis else None, tls=files[:2] if files else None,
        )  # fmt: skip
        extra = ["--workers", str(workers)] if workers else []
        running = env.launch(name, [*guardsetup.command(), "--config", str(config), *extra], port,
                             source=env.baseline if baseline else None)
        return replace(running, scheme="https") if tls else running

    return start


TARGETS: tuple[Target, ...] = (
    Target("direct", "the static upstream itself, no proxy", direct),
    Target("kubectl-proxy", "`kubectl proxy` (Go), the machine's kubectl", kubectl_proxy),
    Target("nginx", "nginx reverse proxy, keep-alive upstream, auto workers", nginx_proxy),
    Target("haproxy", "haproxy http mode, keep-alive, http-reuse always", haproxy),
    Target("guard", "guard, no policies (admit all), embedded store", guard()),
    Target("guard-policies", "guard, example policies + bench tenant, embedded store", guard(policies=True)),
    Target("guard-redis", "guard, example policies, Redis federation", guard(policies=True, redis=True)),
    Target("guard-w1", "guard, example policies, --workers 1", guard(policies=True, workers=1)),
    Target("guard-w2", "guard, example policies, --workers 2", guard(policies=True, workers=2)),
    Target("guard-tls", "guard, example policies, TLS, HTTP/1.1 (wrk)", guard(policies=True, tls=True)),
    Target("guard-h2", "guard, example policies, TLS, HTTP/2 (h2load, 32 connections, 1 stream each)",
           guard(policies=True, tls=True, suffix="-h2"), load="h2load"),
)
SMOKE_TARGETS = ("direct", "kubectl-proxy", "guard")
BASELINE = Target("guard-baseline", "guard, example policies, embedded store, from the --baseline checkout",
                  guard(policies=True, baseline=True))
"""Measured only with `--baseline PATH`: an earlier guard beside this one, in the same run."""
BASELINE_REDIS = Target("guard-redis-baseline",
                        "guard, example policies, Redis federation, from the --baseline checkout",
                        guard(policies=True, redis=True, baseline=True))
BASELINES = (BASELINE, BASELINE_REDIS)
"""The `--baseline` checkout's guard as guard-policies and guard-redis are set up (`--only` picks)."""
