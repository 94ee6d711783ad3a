"""Kubeconfigs: guard reads its own credential from them and writes ones that point at guard."""

from __future__ import annotations

import base64
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from guard.cli.certs import make_ca, make_client_cert, write_pair
from guard.kube.errors import ConfigError
from guard.upstream.kubeconfig import ClusterCredential, in_cluster_credential, load_credential


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca()
    write_pair(directory, "ca", ca)
    write_pair(directory, "alice", make_client_cert(ca, "alice", ["dev"]))
    return directory


def guard_kubeconfig(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guard.cli", "kubeconfig", *args],
                          capture_output=True, text=True)


def test_token_kubeconfig_round_trips(pki: Path, tmp_path: Path) -> None:
    """What `guard kubeconfig --token` writes, load_credential reads back; the file is 0600."""
    out = tmp_path / "kc.yaml"
    result = guard_kubeconfig("--server", "https://127.0.0.1:7443", "--ca", str(pki / "ca.crt"),
                              "--token", "s3cret", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    cred = load_credential(out, None)
    assert cred.server == "https://127.0.0.1:7443"
    assert cred.token == "s3cret"
    assert cred.ca_data == (pki / "ca.crt").read_bytes()
    assert "s3cret" not in repr(cred)


def test_client_cert_kubeconfig_round_trips(pki: Path, tmp_path: Path) -> None:
    """A certificate user's kubeconfig embeds cert and key; it goes to stdout without -o."""
    result = guard_kubeconfig("--server", "https://guard.example:7443", "--ca", str(pki / "ca.crt"),
                              "--client-cert", str(pki / "alice.crt"), "--client-key", str(pki / "alice.key"),
                              "--cluster-name", "prod", "--user-name", "alice")
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    assert doc["current-context"] == "prod"
    path = tmp_path / "kc.yaml"
    path.write_text(result.stdout)
    cred = load_credential(path, "prod")
    assert cred.client_cert_data == (pki / "alice.crt").read_bytes()
    assert cred.client_key_data == (pki / "alice.key").read_bytes()
    assert cred.token is None


@pytest.mark.parametrize(("args", "complaint"), [
    (["--server", "ftp://x", "--token", "t"], "bad --server"),
    (["--server", "https://x", "--token", "t", "--ca", "/nonexistent/ca.crt"], "--ca /nonexistent/ca.crt"),
    (["--server", "https://x", "--client-cert", "CERT"], "--client-cert and --client-key"),
    (["--server", "https://x", "--token", "two words"], "whitespace"),
])
def test_bad_input_is_one_line_and_exit_1(pki: Path, args: list[str], complaint: str) -> None:
    """Each bad invocation prints one line naming the problem and writes nothing."""
    args = [a.replace("CERT", str(pki / "alice.crt")) for a in args]
    result = guard_kubeconfig(*args)
    assert result.returncode == 1
    assert complaint in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def write(path: Path, doc: object) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def kubeconfig(user: dict[str, object], cluster: dict[str, object] | None = None) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Config", "current-context": "c",
            "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
            "clusters": [{"name": "k", "cluster": cluster or {"server": "https://10.0.0.1:6443"}}],
            "users": [{"name": "u", "user": user}]}


def test_relative_files_and_token_file_are_read(tmp_path: Path, pki: Path) -> None:
    """certificate-authority and tokenFile paths are relative to the kubeconfig's directory."""
    (tmp_path / "ca.crt").write_bytes((pki / "ca.crt").read_bytes())
    (tmp_path / "token").write_text("tok\n")
    path = write(tmp_path / "kc", kubeconfig({"tokenFile": "token"},
                                             {"server": "https://h:6443", "certificate-authority": "ca.crt",
                                              "insecure-skip-tls-verify": False}))
    cred = load_credential(path)
    assert (cred.token, cred.token_file) == ("tok", tmp_path / "token")
    assert cred.ca_data == (pki / "ca.crt").read_bytes()


@pytest.mark.parametrize(("doc", "problem"), [
    (kubeconfig({"exec": {"command": "aws"}}), "users[name=u].user.exec: failed: exec: malformed request. "
                                              "missing key 'apiVersion'"),
    (kubeconfig({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/no/plugin"}}),
     "users[name=u].user.exec: failed:"),
    (kubeconfig({"token": "t"}, {"server": "10.0.0.1"}),
     "clusters[name=k].cluster.server: want an http(s) URL"),
    (kubeconfig({"client-certificate-data": base64.b64encode(b"x").decode()}),
     "users[name=u].user: client-certificate and client-key must be given together"),
    (kubeconfig({"token": "t"}, {"server": "https://h", "certificate-authority-data": "!!"}),
     "clusters[name=k].cluster.certificate-authority-data: not valid base64"),
    (kubeconfig({"tokenFile": "missing"}), "users[name=u].user.tokenFile: cannot read"),
    ({**kubeconfig({}), "current-context": "nope"}, "contexts: no entry named 'nope'"),
])
def test_errors_name_file_and_field(tmp_path: Path, doc: object, problem: str) -> None:
    """Every unusable kubeconfig is refused with the file and the field at fault."""
    path = write(tmp_path / "kc", doc)
    with pytest.raises(ConfigError) as raised:
        load_credential(path)
    assert raised.value.problems[0].startswith(f"{path}: ")
    assert problem in raised.value.problems[0]


def test_in_cluster_credential(tmp_path: Path) -> None:
    """The pod's mount and service env become the credential, token file kept for rotation."""
    (tmp_path / "token").write_text("pod-token")
    (tmp_path / "ca.crt").write_bytes(b"CA")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster_credential(tmp_path, env) == ClusterCredential(
        server="https://[fd00::1]:443", ca_data=b"CA", token="pod-token", token_file=tmp_path / "token")
    with pytest.raises(ConfigError):
        in_cluster_credential(tmp_path, {})
