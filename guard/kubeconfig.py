"""Kubeconfig files both ways: guard's own upstream credential in, a kubeconfig pointing at guard out.

Reading resolves one context to a `ClusterCredential` (server, CA, token or client certificate); every
error names the file and the field. The in-cluster variant reads the pod's service-account mount. Writing
(`guard kubeconfig`) embeds guard's CA and the user's credential, to stdout or atomically to a file with
mode 0600. Secrets never appear in a repr, an error message or the log.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from guard.certs import write_atomic
from guard.errors import ConfigError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class ClusterCredential:
    """How guard reaches one cluster as itself."""

    server: str
    ca_data: bytes | None = None
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    """Where the token came from; re-read it, since kubelet rotates projected tokens."""
    client_cert_data: bytes | None = None
    client_key_data: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    tls_server_name: str | None = None


def _fail(path: Path, where: str, problem: str) -> ConfigError:
    return ConfigError([f"{path}: {where}: {problem}"])


def _named(doc: Mapping[str, Any], section: str, name: str, path: Path) -> Mapping[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(section[:-1])
            if not isinstance(body, dict):
                raise _fail(path, f"{section}[name={name}].{section[:-1]}", "must be a mapping")
            return body
    raise _fail(path, section, f"no entry named {name!r}")


def _data(path: Path, where: str, entry: Mapping[str, Any], key: str) -> bytes | None:
    """`<key>-data` (base64) or `<key>` (a file, relative to the kubeconfig's directory)."""
    if entry.get(f"{key}-data"):
        try:
            return base64.b64decode(str(entry[f"{key}-data"]), validate=True)
        except ValueError as e:
            raise _fail(path, f"{where}.{key}-data", "not valid base64") from e
    if entry.get(key):
        return _read(path, f"{where}.{key}", path.parent / str(entry[key]))
    return None


def _read(path: Path, where: str, target: Path) -> bytes:
    try:
        return target.read_bytes()
    except OSError as e:
        raise _fail(path, where, f"cannot read {target}: {e.strerror}") from e


def load_credential(path: Path | str, context: str | None = None) -> ClusterCredential:
    """guard's own credential from `context` (default: current-context) of the kubeconfig at `path`."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError([f"{path}: cannot read kubeconfig: {e}"]) from e
    if not isinstance(doc, dict):
        raise _fail(path, "(top level)", "not a kubeconfig mapping")
    name = context or doc.get("current-context")
    if not name:
        raise _fail(path, "current-context", "not set and no context given")
    ctx = _named(doc, "contexts", str(name), path)
    cluster_name, user_name = str(ctx.get("cluster", "")), str(ctx.get("user", ""))
    cluster = _named(doc, "clusters", cluster_name, path)
    user = _named(doc, "users", user_name, path) if user_name else {}
    return _credential(path, f"clusters[name={cluster_name}].cluster", cluster,
                       f"users[name={user_name}].user", user)


def _credential(path: Path, cwhere: str, cluster: Mapping[str, Any], uwhere: str,
                user: Mapping[str, Any]) -> ClusterCredential:
    server = str(cluster.get("server", ""))
    if urlsplit(server).scheme not in ("http", "https") or not urlsplit(server).hostname:
        raise _fail(path, f"{cwhere}.server", f"want an http(s) URL, got {server!r}")
    for unsupported in ("exec", "auth-provider", "username", "password"):
        if user.get(unsupported):
            raise _fail(path, f"{uwhere}.{unsupported}", "not supported; use a token or a client certificate")
    token, token_file = user.get("token"), user.get("tokenFile")
    if token_file and not token:
        token_file = path.parent / str(token_file)
        token = _read(path, f"{uwhere}.tokenFile", token_file).decode().strip()
    cert, key = _data(path, uwhere, user, "client-certificate"), _data(path, uwhere, user, "client-key")
    if (cert is None) != (key is None):
        raise _fail(path, uwhere, "client-certificate and client-key must be given together")
    return ClusterCredential(
        server=server.rstrip("/"), ca_data=_data(path, cwhere, cluster, "certificate-authority"),
        token=str(token) if token else None, token_file=Path(token_file) if token_file else None,
        client_cert_data=cert, client_key_data=key,
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name"))


def in_cluster_credential(root: Path = SERVICE_ACCOUNT_DIR,
                          env: Mapping[str, str] | None = None) -> ClusterCredential:
    """The pod's own service account, as client-go's InClusterConfig reads it."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigError(["KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT: not set (not in a pod?)"])
    host = f"[{host}]" if ":" in host else host
    token = _read(root / "token", "token", root / "token").decode().strip()
    ca = _read(root / "ca.crt", "ca.crt", root / "ca.crt")
    return ClusterCredential(server=f"https://{host}:{port}", ca_data=ca, token=token,
                             token_file=root / "token")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, help="guard's URL, e.g. https://127.0.0.1:7443")
    parser.add_argument("--ca", type=Path, help="CA file that signed guard's serving certificate")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--token", help="the user's bearer token")
    who.add_argument("--token-file", type=Path, help="file holding the user's bearer token")
    who.add_argument("--client-cert", type=Path, help="the user's client certificate (needs --client-key)")
    parser.add_argument("--client-key", type=Path, help="the key of --client-cert")
    parser.add_argument("--cluster-name", default="guard", help="cluster and context name (default: guard)")
    parser.add_argument("--user-name", default="guard-user", help="user entry name (default: guard-user)")
    parser.add_argument("-o", "--output", type=Path, help="write here (mode 0600) instead of stdout")


def build(args: argparse.Namespace) -> dict[str, Any]:
    """The kubeconfig document for `args`; ValueError (one line) on bad input."""
    split = urlsplit(args.server)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise ValueError(f"bad --server {args.server!r}: want https://HOST[:PORT]")
    cluster: dict[str, Any] = {"server": args.server.rstrip("/")}
    if args.ca:
        cluster["certificate-authority-data"] = _b64(_pem_certs(args.ca, "--ca"))
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": args.cluster_name, "cluster": cluster}],
        "users": [{"name": args.user_name, "user": _user(args)}],
        "contexts": [{"name": args.cluster_name,
                      "context": {"cluster": args.cluster_name, "user": args.user_name}}],
        "current-context": args.cluster_name,
    }


def _user(args: argparse.Namespace) -> dict[str, str]:
    if args.client_cert or args.client_key:
        if not (args.client_cert and args.client_key):
            raise ValueError("--client-cert and --client-key must be given together")
        key = _file(args.client_key, "--client-key")
        try:
            load_pem_private_key(key, password=None)
        except (ValueError, TypeError) as e:
            raise ValueError(f"--client-key {args.client_key}: not an unencrypted PEM private key") from e
        return {"client-certificate-data": _b64(_pem_certs(args.client_cert, "--client-cert")),
                "client-key-data": _b64(key)}
    token = args.token if args.token is not None else _file(args.token_file, "--token-file").decode().strip()
    if not token or any(c.isspace() for c in token):
        raise ValueError("the token is empty or contains whitespace")
    return {"token": token}


def _file(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ValueError(f"{option} {path}: {e.strerror}") from e


def _pem_certs(path: Path, option: str) -> bytes:
    data = _file(path, option)
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise ValueError(f"{option} {path}: not a PEM certificate") from e
    return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def run(args: argparse.Namespace) -> int:
    try:
        text = yaml.safe_dump(build(args), sort_keys=False)
        if args.output is None:
            sys.stdout.write(text)
        else:
            write_atomic(args.output, text.encode(), mode=0o600)
    except (ValueError, OSError) as e:
        print(f"guard kubeconfig: {e}", file=sys.stderr)
        return 1
    return 0
