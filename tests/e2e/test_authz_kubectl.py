"""The real kubectl through guard with edge authorization: a forbidden `kubectl get pods` prints the
api-server's own Forbidden error, and the simulator never sees the LIST."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from guard.cli.certs import make_ca, make_server_cert, write_pair
from tests.conftest import SimServer, have_kubectl
from tests.proxy_fakes import spawn_guard

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not have_kubectl(), reason="kubectl is not on PATH")]


def _kubeconfig(path: Path, url: str, ca: Path, token: str) -> Path:
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "guard",
              "clusters": [{"name": "guard", "cluster": {"server": url, "certificate-authority": str(ca)}}],
              "users": [{"name": "u", "user": {"token": token}}],
              "contexts": [{"name": "guard", "context": {"cluster": "guard", "user": "u"}}]}
    path.write_text(json.dumps(config))
    return path


def test_kubectl_sees_the_api_servers_forbidden_and_the_list_never_reaches_it(
        sim_server: Callable[..., SimServer], tmp_path: Path) -> None:
    """Three forbidden `kubectl get pods` runs: the api-server's message each time, no LIST upstream."""
    sim = sim_server()
    ca = make_ca()
    write_pair(tmp_path, "ca", ca)
    write_pair(tmp_path, "server", make_server_cert(ca))  # kubectl sends tokens only over TLS
    config = tmp_path / "guard.yaml"
    tls = f"tls: {{cert: {tmp_path}/server.crt, key: {tmp_path}/server.key}}\n"
    config.write_text(f"listen: 127.0.0.1:0\n{tls}clusters:\n  - name: sim\n    server: {sim.url}\n"
                      f"    token: {sim.tokens['admin']}\n    authorize: {{mode: subjectAccessReview}}\n"
                      "accessLog: {enabled: false}\n")
    process, url, _ = spawn_guard(config)
    try:
        kubeconfig = _kubeconfig(tmp_path / "kubeconfig", url, tmp_path / "ca.crt", sim.tokens["mallory"])
        env = {**os.environ, "HOME": str(tmp_path), "KUBECACHEDIR": str(tmp_path / "cache")}
        for _ in range(3):
            argv = ["kubectl", "--kubeconfig", str(kubeconfig), "get", "pods", "-n", "default"]
            result = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
            assert result.returncode != 0
            assert ('Error from server (Forbidden): pods is forbidden: User "mallory" cannot list resource '
                    '"pods" in API group "" in the namespace "default"') in result.stderr
    finally:
        process.terminate()
        process.wait(timeout=20)
    state = sim.state()
    assert "list" not in state["users"].get("mallory", {}).get("verbs", {})
    assert state["subjectAccessReviews"]["mallory"] == 1
