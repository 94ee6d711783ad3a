"""Kubeconfig files both ways: guard's own upstream credential in, a kubeconfig pointing at guard out.

Reading resolves one context to a `ClusterCredential` (server, CA, token or client certificate); every
error names the file and the field. The in-cluster variant reads the pod's service-account mount. Writing
(`guard kubeconfig`) embeds guard's CA and the user's credential, to stdout or atomically to a file with
mode 0600. Secrets never appear in a repr, an error message or the log.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from guard.kube.errors import ConfigError

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
