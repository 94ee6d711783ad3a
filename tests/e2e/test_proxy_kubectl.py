"""The real kubectl through guard (TLS) against the simulator: a token user in passthrough mode and a
client-certificate user in impersonate mode. The simulator's record shows it saw the caller, not guard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from guard.cli.certs import make_ca, make_client_cert, make_server_cert, write_pair
from tests.conftest import SimServer, have_kubectl, peek_output

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not have_kubectl(), reason="kubectl is not on PATH")]

POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: box}\nspec: {containers: [{name: c, image: busybox}]}\n"
DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "nginx:1"}]}
"""


@dataclass
class Through:
    """kubectl as alice, pointed at guard."""

    sim: SimServer
    guard: subprocess.Popen[str]
    url: str
    kubeconfig: Path
    home: Path
    mode: str

    def run(self, *args: str, stdin: str | None = None, timeout: float = 30) -> str:
        result = subprocess.run(self.argv(*args), input=stdin, capture_output=True, text=True,
                                timeout=timeout, env=self.env())
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def argv(self, *args: str) -> list[str]:
        return ["kubectl", "--kubeconfig", str(self.kubeconfig), "-n", "team-a", *args]

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "KUBECACHEDIR": str(self.home / "cache")}


def _certs(directory: Path) -> None:
    ca = make_ca()
    write_pair(directory, "ca", ca)
    write_pair(directory, "server", make_server_cert(ca))
    write_pair(directory, "alice", make_client_cert(ca, "alice", ["team-a"]))


def _kubeconfig(path: Path, url: str, certs: Path, *, token: str | None) -> Path:
    user = {"token": token} if token else {"client-certificate": str(certs / "alice.crt"),
                                           "client-key": str(certs / "alice.key")}
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "guard",
        "clusters": [{"name": "guard",
                      "cluster": {"server": url, "certificate-authority": str(certs / "ca.crt")}}],
        "users": [{"name": "alice", "user": user}],
        "contexts": [{"name": "guard",
                      "context": {"cluster": "guard", "user": "alice", "namespace": "team-a"}}],
    }))
    return path


def _start_guard(config: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-m", "guard.cli", "serve", "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("guard serving https://"), line
    return process, line.split()[2]


@pytest.fixture(params=["token-passthrough", "certificate-impersonate"])
def through(request: pytest.FixtureRequest, sim_server: Callable[..., SimServer],
            tmp_path: Path) -> Iterator[Through]:
    sim = sim_server("--seed-objects", "4")
    certs = tmp_path / "guard-certs"
    certs.mkdir()
    _certs(certs)
    mode = "passthrough" if request.param == "token-passthrough" else "impersonate"
    config = tmp_path / "guard.yaml"
    config.write_text(
        f"listen: 127.0.0.1:0\ntls: {{cert: {certs}/server.crt, key: {certs}/server.key, "
        f"clientCA: {certs}/ca.crt}}\nclusters:\n  - name: sim\n    server: {sim.url}\n"
        f"    token: {sim.tokens['admin']}\nforwarding: {mode}\naccessLog: {{enabled: false}}\n")
    guard, url = _start_guard(config)
    token = sim.tokens["alice"] if mode == "passthrough" else None
    try:
        kubeconfig = _kubeconfig(tmp_path / "kubeconfig", url, certs, token=token)
        yield Through(sim, guard, url, kubeconfig, tmp_path, mode)
    finally:
        guard.terminate()
        guard.wait(timeout=20)


def test_reads_writes_and_identity_through_guard(through: Through) -> None:
    """get/list (table, json), create, apply (client and server side), patch, scale, delete, auth can-i,
    auth whoami — and the simulator counted alice's requests, none made by guard's own user."""
    assert "created" in through.run("create", "-f", "-", stdin=POD)
    table = through.run("get", "pods").splitlines()
    assert table[0].split()[:3] == ["NAME", "READY", "STATUS"] and table[1].split()[0] == "box"
    assert json.loads(through.run("get", "pod", "box", "-o", "json"))["metadata"]["name"] == "box"
    assert "created" in through.run("apply", "-f", "-", stdin=DEPLOYMENT)
    assert "serverside-applied" in through.run("apply", "--server-side", "-f", "-",
                                               stdin=DEPLOYMENT.replace("replicas: 1", "replicas: 2"))
    through.run("patch", "deployment", "web", "--type=merge", "-p", '{"metadata":{"labels":{"t":"x"}}}')
    assert "scaled" in through.run("scale", "deployment", "web", "--replicas=3")
    replicas = json.loads(through.run("get", "deployment", "web", "-o", "json"))["spec"]["replicas"]
    assert replicas == 3
    assert through.run("auth", "can-i", "create", "pods").strip() == "yes"
    denied = subprocess.run(through.argv("auth", "can-i", "create", "pods", "-n", "team-b"),
                            capture_output=True, text=True, timeout=30, env=through.env())
    assert denied.stdout.strip() == "no"
    whoami = json.loads(through.run("auth", "whoami", "-o", "json"))["status"]["userInfo"]
    assert whoami["username"] == "alice" and "team-a" in whoami["groups"]
    assert 'deployment.apps "web" deleted' in through.run("delete", "deployment", "web")
    state = through.sim.state()
    alice = state["users"]["alice"]["requests"]
    assert alice >= 12
    # guard's own user made at most the one TokenReview of alice's token (cached after that).
    assert state["users"].get("admin", {"requests": 0})["requests"] <= 1
    impersonated = state["impersonators"].get("admin", 0)
    assert impersonated == (alice if through.mode == "impersonate" else 0)


def test_exec_logs_and_watch_through_guard(through: Through) -> None:
    """`exec -- echo hi` tunnels, `logs -f` streams lines, `get -w` prints a pod created later."""
    through.run("create", "-f", "-", stdin=POD)
    assert through.run("exec", "box", "--", "echo", "hi") == "hi\n"
    with pytest.raises(subprocess.TimeoutExpired) as stopped:
        subprocess.run(through.argv("logs", "-f", "box"), capture_output=True, timeout=4, env=through.env())
    assert len([line for line in (stopped.value.stdout or b"").decode().splitlines() if line]) >= 2
    watcher = subprocess.Popen(through.argv("get", "pods", "-w", "--request-timeout=0"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=through.env())
    try:
        seen, attempt = "", 0
        while "late-" not in seen and attempt < 50:
            through.run("run", f"late-{attempt}", "--image=busybox")
            attempt += 1
            time.sleep(0.2)
            seen += peek_output(watcher)
        assert "late-" in seen
    finally:
        watcher.kill()
        watcher.communicate()

