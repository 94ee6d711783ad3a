"""The real kubectl with one kubeconfig for two clusters behind one guard (TLS): contexts pointing at
`https://guard/clusters/east` and `.../clusters/west`, and one reaching west by its TLS server name.
What is written through one context exists in that cluster's simulator only."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from guard.cli.certs import make_ca, make_server_cert, write_pair
from tests.conftest import SimServer, have_kubectl
from tests.proxy_fakes import spawn_guard

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not have_kubectl(), reason="kubectl is not on PATH")]

POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: box}\nspec: {containers: [{name: c, image: busybox}]}\n"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\ndata: {%s}\n"


@dataclass
class Kubectl:
    kubeconfig: Path
    home: Path

    def run(self, context: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), "--context", context, "-n", "team-a", *args],
            input=stdin, capture_output=True, text=True, timeout=30,
            env={**os.environ, "HOME": str(self.home), "KUBECACHEDIR": str(self.home / "cache")})

    def ok(self, context: str, *args: str, stdin: str | None = None) -> str:
        result = self.run(context, *args, stdin=stdin)
        assert result.returncode == 0, f"kubectl --context {context} {' '.join(args)}: {result.stderr}"
        return result.stdout


@pytest.fixture
def clusters(sim_server: Callable[..., SimServer],
             tmp_path: Path) -> Iterator[tuple[Kubectl, SimServer, SimServer]]:
    east, west = sim_server(), sim_server()
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = make_ca()
    write_pair(certs, "ca", ca)
    write_pair(certs, "server", make_server_cert(ca, ["east.example", "west.example"]))
    config = tmp_path / "guard.yaml"
    config.write_text(
        f"listen: 127.0.0.1:0\ntls: {{cert: {certs}/server.crt, key: {certs}/server.key}}\nclusters:\n"
        f"  - {{name: east, server: {east.url}, token: {east.tokens['admin']}, hosts: [east.example]}}\n"
        f"  - {{name: west, server: {west.url}, token: {west.tokens['admin']}, hosts: [west.example]}}\n"
        "accessLog: {enabled: false}\n")
    guard, url, _ = spawn_guard(config)
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps(_kubeconfig(url, certs / "ca.crt", east, west)))
        yield Kubectl(kubeconfig, tmp_path), east, west
    finally:
        guard.terminate()
        guard.wait(timeout=20)


def _kubeconfig(url: str, ca: Path, east: SimServer, west: SimServer) -> dict[str, object]:
    clusters = {"east": {"server": f"{url}/clusters/east"}, "west": {"server": f"{url}/clusters/west"},
                "west-sni": {"server": url, "tls-server-name": "west.example"}}
    tokens = {"east": east.tokens["alice"], "west": west.tokens["alice"], "west-sni": west.tokens["alice"]}
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "east",
        "clusters": [{"name": n, "cluster": {**c, "certificate-authority": str(ca)}}
                     for n, c in clusters.items()],
        "users": [{"name": n, "user": {"token": t}} for n, t in tokens.items()],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in clusters],
    }


def test_one_kubeconfig_two_clusters_behind_one_guard(clusters: tuple[Kubectl, SimServer, SimServer]) -> None:
    """create/get through `/clusters/east`, by SNI to west, exec through the prefix; each object
    exists in its own cluster only, and each simulator counted alice's requests."""
    kubectl, east, west = clusters
    assert "created" in kubectl.ok("east", "create", "-f", "-", stdin=CONFIGMAP % ("only-east", "a: '1'"))
    assert "created" in kubectl.ok("west-sni", "apply", "-f", "-", stdin=CONFIGMAP % ("only-west", "b: '2'"))
    got = json.loads(kubectl.ok("east", "get", "configmap", "only-east", "-o", "json"))
    assert got["data"] == {"a": "1"}
    missing = kubectl.run("west", "get", "configmap", "only-east")
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    assert "only-west" in kubectl.ok("west", "get", "configmaps")
    assert "only-west" not in kubectl.ok("east", "get", "configmaps")
    kubectl.ok("east", "create", "-f", "-", stdin=POD)
    assert kubectl.ok("east", "exec", "box", "--", "echo", "hi") == "hi\n"
    assert east.state()["users"]["alice"]["requests"] >= 5
    assert west.state()["users"]["alice"]["requests"] >= 3
