"""Shared fixtures: `sim_server` starts `python -m chaos sim` as a subprocess on free ports.

    def test_x(sim_server):
        sim = sim_server("--seed-objects", "10", tls=True)
        sim.url, sim.urls, sim.tokens["alice"], sim.state(), sim.kubeconfig("alice"), sim.kubectl("get", "ns")

Default users (static tokens): admin (system:masters), alice (team-a), bob (team-b), mallory (no
group). Unless the caller passes its own --bootstrap, namespaces team-a and team-b exist and each
team may do anything in its own namespace. Every process started is killed afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chaos.ports import free_ports

USERS = {
    "admin": ("1", "system:masters"),
    "alice": ("2", "team-a"),
    "bob": ("3", "team-b"),
    "mallory": ("4", ""),
}
TEAM_BOOTSTRAP = """
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: tenant-edit}
rules:
- {apiGroups: ["", apps, coordination.k8s.io, events.k8s.io], resources: ["*"], verbs: ["*"]}
""" + "".join(
    f"""---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {team}-edit, namespace: {team}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tenant-edit}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: Group, name: {team}}}]
"""
    for team in ("team-a", "team-b")
)


@dataclass
class SimServer:
    process: subprocess.Popen[str]
    urls: list[str]
    tokens: dict[str, str]
    workdir: Path
    ca_file: Path | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return self.urls[0]

    def _ssl(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None

    def request(
        self,
        method: str,
        path: str,
        *,
        user: str = "admin",
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(status, decoded JSON or text) of one request as `user`."""
        data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.tokens[user]}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=10, context=self._ssl()) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def state(self) -> dict[str, Any]:
        status, body = self.request("GET", "/debug/sim/state")
        assert status == 200, body
        return dict(body)

    def kubeconfig(self, user: str, *, namespace: str = "default") -> Path:
        path = self.workdir / f"kubeconfig-{user}"
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca_file:
            cluster["certificate-authority"] = str(self.ca_file)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": user,
            "clusters": [{"name": "sim", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": self.tokens[user]}}],
            "contexts": [{"name": user, "context": {"cluster": "sim", "user": user, "namespace": namespace}}],
        }
        path.write_text(json.dumps(config))
        return path

    def kubectl(
        self, *args: str, user: str = "admin", stdin: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECACHEDIR": str(self.workdir / "kube-cache"), "HOME": str(self.workdir)}
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig(user)), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _write_tokens(path: Path) -> dict[str, str]:
    tokens = {user: f"{user}-{secrets.token_hex(8)}" for user in USERS}
    lines = [f'{tokens[u]},{u},{uid},"{groups}"' for u, (uid, groups) in USERS.items()]
    path.write_text("\n".join(lines) + "\n")
    return tokens


def _wait_serving(process: subprocess.Popen[str], log: Path, count: int, timeout: float) -> list[str]:
    """The URLs of the `serving <url>` lines, once `count` of them are in the log (or the time is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines()
        urls = [line.split()[1] for line in lines if line.startswith("serving ")]
        if len(urls) >= count or process.poll() is not None:
            return urls
        time.sleep(0.05)
    return []


@pytest.fixture
def sim_server(tmp_path: Path) -> Iterator[Callable[..., SimServer]]:
    started: list[SimServer] = []

    def start(*args: str, tls: bool = False, replicas: int = 1, timeout: float = 20.0) -> SimServer:
        workdir = tmp_path / f"sim-{len(started)}"
        workdir.mkdir()
        tokens = _write_tokens(workdir / "tokens.csv")
        argv = [
            sys.executable,
            "-m",
            "chaos",
            "sim",
            "--listen",
            f"127.0.0.1:{free_ports(replicas)}",
            "--replicas",
            str(replicas),
            "--token-file",
            str(workdir / "tokens.csv"),
            *args,
        ]
        if "--bootstrap" not in args:
            (workdir / "bootstrap.yaml").write_text(TEAM_BOOTSTRAP)
            argv += ["--bootstrap", str(workdir / "bootstrap.yaml")]
        ca_file = None
        if tls:
            argv += ["--tls", "--cert-dir", str(workdir / "certs")]
            ca_file = workdir / "certs" / "ca.crt"
        log = workdir / "sim.log"
        # A file, not a pipe: nobody reads the output once it serves, and a full pipe would block it.
        with log.open("w") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True)
        server = SimServer(process, [], tokens, workdir, ca_file, log)
        started.append(server)
        server.urls = _wait_serving(process, log, replicas, timeout)
        if len(server.urls) < replicas:
            server.stop()
            pytest.fail(f"simulator did not start: {log.read_text()}")
        return server

    yield start
    for server in started:
        server.stop()


def have_kubectl() -> bool:
    return shutil.which("kubectl") is not None


def peek_output(process: subprocess.Popen[str]) -> str:
    """What a background process (a `kubectl get -w`, say) has printed so far, without waiting."""
    assert process.stdout is not None
    fd, chunks = process.stdout.fileno(), []
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk.decode())
    return "".join(chunks)
