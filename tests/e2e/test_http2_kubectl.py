"""The real kubectl through guard's TLS listener speaks HTTP/2 (ALPN h2): guard's access log says so
for its reads, writes and watches, while exec and port-forward (which kubectl negotiates over
HTTP/1.1 on a connection of their own) keep working, and the official Python client (HTTP/1.1)
is served on the same port.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.conftest import SimServer, free_ports, have_kubectl, peek_output
from tests.h2client import Guard, start_guard

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not have_kubectl(), reason="kubectl is not on PATH")]

POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: c, image: nginx}]}\n"


@pytest.fixture
def guard(sim_server: Callable[..., SimServer], tmp_path: Path) -> Iterator[Guard]:
    g = start_guard(sim_server("--seed-objects", "2"), tmp_path)
    try:
        yield g
    finally:
        g.process.terminate()
        g.process.wait(timeout=20)


class Kubectl:
    def __init__(self, guard: Guard, home: Path) -> None:
        self.home = home
        self.kubeconfig = home / "kubeconfig"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "guard",
            "clusters": [{"name": "guard", "cluster": {"server": f"https://{guard.host}:{guard.port}",
                                                       "certificate-authority": str(guard.ca)}}],
            "users": [{"name": "alice", "user": {"token": guard.token()}}],
            "contexts": [{"name": "guard", "context": {"cluster": "guard", "user": "alice",
                                                      "namespace": "team-a"}}]}))

    def argv(self, *args: str) -> list[str]:
        return ["kubectl", "--kubeconfig", str(self.kubeconfig), *args]

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "KUBECACHEDIR": str(self.home / "cache")}

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.argv(*args), input=stdin, capture_output=True, text=True, timeout=30,
                                env=self.env())
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result

    def background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env())


def test_kubectl_speaks_http2_through_guard_and_http11_clients_share_the_port(guard: Guard,
                                                                              tmp_path: Path) -> None:
    kubectl = Kubectl(guard, tmp_path)
    assert "created" in kubectl.run("apply", "-f", "-", stdin=POD).stdout
    big = tmp_path / "big.txt"  # a request body of several stream windows (64 KiB each)
    big.write_text("x" * 300_000)
    assert "created" in kubectl.run("create", "configmap", "big", f"--from-file={big}").stdout
    data = json.loads(kubectl.run("get", "configmap", "big", "-o", "json").stdout)["data"]
    assert data == {"big.txt": "x" * 300_000}
    listed = kubectl.run("-v=6", "get", "pods")
    assert "200 OK" in listed.stderr and "web" in listed.stdout
    assert kubectl.run("exec", "web", "--", "echo", "hi").stdout == "hi\n"
    with pytest.raises(subprocess.TimeoutExpired) as following:  # `logs -f` streams until stopped
        subprocess.run(kubectl.argv("logs", "-f", "web"), capture_output=True, timeout=4, env=kubectl.env())
    assert len([line for line in (following.value.stdout or b"").decode().splitlines() if line]) >= 2
    _port_forward(kubectl)
    watcher = kubectl.background("get", "pods", "-w", "--request-timeout=0")
    try:
        kubectl.run("run", "late", "--image=busybox")
        seen = ""
        for _ in range(50):
            seen += peek_output(watcher)
            if "late" in seen:
                break
            time.sleep(0.2)
        assert "late" in seen
    finally:
        watcher.kill()
        watcher.communicate()
    configuration = k8s.Configuration(host=f"https://{guard.host}:{guard.port}",
                                      api_key={"authorization": guard.token()}, api_key_prefix={
                                          "authorization": "Bearer"})
    configuration.ssl_ca_cert = str(guard.ca)
    pods = k8s.CoreV1Api(k8s.ApiClient(configuration)).list_namespaced_pod("team-a", label_selector="x!=y")
    assert "web" in {p.metadata.name for p in pods.items}

    def mine(line: dict[str, object]) -> bool:
        return line.get("user") == "alice"

    lines = guard.wait_log(lambda line: mine(line) and line.get("verb") == "list"
                           and line.get("protocol") == "HTTP/1.1", 1)
    by = {(line.get("verb"), line.get("subresource") or "", line.get("protocol"))
          for line in guard.log_lines() if mine(line)}
    assert len(lines) == 1  # the Python client's LIST
    assert ("list", "", "HTTP/2") in by and ("create", "", "HTTP/2") in by and ("watch", "", "HTTP/2") in by
    assert ("get", "log", "HTTP/2") in by
    assert ("connect", "exec", "HTTP/1.1") in by and ("connect", "portforward", "HTTP/1.1") in by


def _port_forward(kubectl: Kubectl) -> None:
    port = free_ports(1)
    process = kubectl.background("port-forward", "pod/web", f"{port}:80")
    try:
        body = ""
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as answer:
                    body = answer.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert "Welcome to nginx!" in body
    finally:
        process.kill()
        process.communicate()

