"""The real kubectl reads the kubeconfigs `guard kubeconfig` writes."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from guard.cli.certs import make_ca, make_client_cert, write_pair

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")]


def kubectl_view(path: Path) -> Any:
    result = subprocess.run(["kubectl", "config", "view", "--kubeconfig", str(path), "--raw", "-o", "json"],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def write_kubeconfig(out: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "guard.cli", "kubeconfig", *args, "-o", str(out)], check=True)


def test_kubectl_reads_a_token_kubeconfig(tmp_path: Path) -> None:
    """kubectl sees guard's server, guard's CA and the user's token as written."""
    ca = make_ca()
    write_pair(tmp_path, "ca", ca)
    out = tmp_path / "kc.yaml"
    write_kubeconfig(out, "--server", "https://127.0.0.1:7443", "--ca", str(tmp_path / "ca.crt"),
                     "--token", "abc123", "--cluster-name", "dev")
    view = kubectl_view(out)
    assert view["current-context"] == "dev"
    cluster = view["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:7443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == ca.cert_pem()
    assert view["users"][0]["user"]["token"] == "abc123"


def test_kubectl_reads_a_client_certificate_kubeconfig(tmp_path: Path) -> None:
    """kubectl sees the embedded client certificate and key as written."""
    ca = make_ca()
    write_pair(tmp_path, "ca", ca)
    alice = make_client_cert(ca, "alice", ["dev"])
    write_pair(tmp_path, "alice", alice)
    out = tmp_path / "kc.yaml"
    write_kubeconfig(out, "--server", "https://127.0.0.1:7443", "--ca", str(tmp_path / "ca.crt"),
                     "--client-cert", str(tmp_path / "alice.crt"),
                     "--client-key", str(tmp_path / "alice.key"), "--user-name", "alice")
    user = kubectl_view(out)["users"][0]
    assert user["name"] == "alice"
    assert base64.b64decode(user["user"]["client-certificate-data"]) == alice.cert_pem()
    assert base64.b64decode(user["user"]["client-key-data"]) == alice.key_pem()
