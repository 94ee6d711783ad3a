"""guard's own upstream credential from a kubeconfig context, or from the pod's service account.

Reading resolves one context to a `ClusterCredential` (server, CA, token or client certificate); every
error names the file and the field. A user that authenticates through an `exec` plugin or an
`auth-provider` (EKS, GKE, AKS, OIDC) is read through the `kubernetes` package, which runs them as
kubectl does; the credential then carries how to renew the token (guard.upstream.renewal). Secrets
never appear in a repr, an error message or the log.
"""

from __future__ import annotations

import base64
import datetime
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
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
    plugin: Callable[[], PluginToken] | None = field(default=None, repr=False)
    """Runs the user's exec plugin or auth-provider again: the next token (None: a static one)."""
    expires: float | None = None
    """When `token` expires (epoch seconds), when a plugin said."""


@dataclass(frozen=True)
class PluginToken:
    """What an exec plugin or auth-provider issued: a token and when it expires."""

    token: str | None = field(default=None, repr=False)
    expires: float | None = None
    client_cert_data: bytes | None = field(default=None, repr=False)
    client_key_data: bytes | None = field(default=None, repr=False)


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
    uwhere = f"users[name={user_name}].user"
    credential = _credential(path, f"clusters[name={cluster_name}].cluster", cluster, uwhere, user)
    if "exec" in user:
        plugin = _exec_runner(user["exec"], cluster, path, f"{uwhere}.exec")
    elif "auth-provider" in user:
        plugin = _auth_provider_runner(doc, str(name), path, f"{uwhere}.auth-provider")
    else:
        return credential
    issued = plugin()
    return replace(credential, token=issued.token or credential.token, expires=issued.expires, plugin=plugin,
                   client_cert_data=issued.client_cert_data or credential.client_cert_data,
                   client_key_data=issued.client_key_data or credential.client_key_data)


# The kubernetes package runs exec plugins and auth-providers as kubectl does. It is imported in
# these functions only: it is heavy, and only these users need it.

def _exec_runner(config: Mapping[str, Any], cluster: Mapping[str, Any], path: Path,
                 where: str) -> Callable[[], PluginToken]:
    """Runs the user's exec plugin (client.authentication.k8s.io ExecCredential) and returns what it
    issued; ConfigError naming `path` and `where` when it fails."""
    def run() -> PluginToken:
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.exec_provider import ExecProvider
        from kubernetes.config.kube_config import ConfigNode

        try:
            provider = ExecProvider(ConfigNode("exec", dict(config)), str(path.parent),  # type: ignore[no-untyped-call]
                                    ConfigNode("cluster", dict(cluster)))  # type: ignore[no-untyped-call]
            status = provider.run()  # type: ignore[no-untyped-call]
        except (ConfigException, OSError, ValueError, KeyError) as e:
            raise _fail(path, where, f"failed: {str(e)[:300]}") from e
        return _from_status(status, path, where)
    return run


def _from_status(status: Mapping[str, Any], path: Path, where: str) -> PluginToken:
    token = status.get("token") or None
    cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
    if token is None and not (cert and key):
        raise _fail(path, where, "issued neither a token nor a client certificate and key")
    expires = status.get("expirationTimestamp")
    try:
        when = datetime.datetime.fromisoformat(str(expires).replace("Z", "+00:00")).timestamp() \
            if expires else None
    except ValueError as e:
        raise _fail(path, where, f"expirationTimestamp {expires!r} is not an RFC 3339 time") from e
    return PluginToken(token=str(token) if token else None, expires=when,
                       client_cert_data=str(cert).encode() if cert else None,
                       client_key_data=str(key).encode() if key else None)


def _auth_provider_runner(doc: Mapping[str, Any], context: str, path: Path,
                          where: str) -> Callable[[], PluginToken]:
    """Runs the user's auth-provider (oidc, gcp, azure) through the kubernetes package's loader."""
    def run() -> PluginToken:
        from kubernetes.client import Configuration
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.config.kube_config import KubeConfigLoader

        configuration = Configuration()
        try:
            loader = KubeConfigLoader(config_dict=dict(doc), active_context=context,  # type: ignore[no-untyped-call]
                                      config_base_path=str(path.parent))
            loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError, ValueError, KeyError) as e:
            raise _fail(path, where, f"failed: {str(e)[:300]}") from e
        # The key is "BearerToken" in recent kubernetes packages, "authorization" in older ones.
        bearer = next((str(v) for v in configuration.api_key.values() if str(v).startswith("Bearer ")), "")
        expiry = getattr(loader, "expiry", None)
        stamp = expiry.isoformat() if isinstance(expiry, datetime.datetime) else None
        return _from_status({"token": bearer.removeprefix("Bearer ").strip(), "expirationTimestamp": stamp},
                            path, where)
    return run


def _credential(path: Path, cwhere: str, cluster: Mapping[str, Any], uwhere: str,
                user: Mapping[str, Any]) -> ClusterCredential:
    server = str(cluster.get("server", ""))
    if urlsplit(server).scheme not in ("http", "https") or not urlsplit(server).hostname:
        raise _fail(path, f"{cwhere}.server", f"want an http(s) URL, got {server!r}")
    for unsupported in ("username", "password"):
        if user.get(unsupported):
            raise _fail(path, f"{uwhere}.{unsupported}", "not supported; use a token, a client certificate, "
                        "an exec plugin or an auth-provider")
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
