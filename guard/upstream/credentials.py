"""guard's own credential towards a cluster: a token and/or a client certificate, and the TLS context
that verifies the api-server, read from the sources a cluster's settings name (token, tokenFile,
kubeconfig/context, inCluster, caFile, certFile/keyFile).

Every error names the settings field at fault. It must never put a token or key material into a
log line, an exception message or a repr.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from guard.kube.errors import ConfigError
from guard.settings import ClusterSettings
from guard.upstream import kubeconfig
from guard.upstream.kubeconfig import PluginToken
from guard.upstream.renewal import TokenSource


@dataclass(frozen=True)
class Credential:
    """guard's own identity towards the cluster: a token and/or a client certificate in `ssl`."""

    servers: tuple[str, ...]
    token: str | None = field(default=None, repr=False)
    ssl: ssl.SSLContext | None = field(default=None, repr=False)
    source: TokenSource | None = None
    """Where a renewed token comes from (an exec plugin or auth-provider); None: `token` is fixed."""

    def auth_headers(self) -> tuple[tuple[str, str], ...]:
        token = self.source.token if self.source is not None else self.token
        return (("Authorization", f"Bearer {token}"),) if token else ()

    def headers(self) -> dict[str, str]:
        """The headers of guard's own calls (reviews, checks) now: read per call, since a renewed
        token replaces the last one."""
        return dict(self.auth_headers())


def resolve_credential(cluster: ClusterSettings) -> Credential:
    """Read guard's credential from the sources the settings name. ConfigError names the field."""
    at = f"clusters[{cluster.name}]"
    token, servers, ctx = cluster.token, cluster.servers, None
    if cluster.token_file is not None:
        token = _read_text(cluster.token_file, f"{at}.tokenFile").strip()
    source = None
    if cluster.kubeconfig is not None or cluster.in_cluster:
        token, servers, ctx, source = _from_kubeconfig(cluster, token, servers)
    if ctx is None:
        ctx = _ssl_context(cluster.ca_file, cluster.cert_file, cluster.key_file,
                           cluster.insecure_skip_tls_verify, at)
    return Credential(servers=tuple(servers), token=token or None, ssl=ctx, source=source)


def _from_kubeconfig(cluster: ClusterSettings, token: str | None, servers: tuple[str, ...]
                     ) -> tuple[str | None, tuple[str, ...], ssl.SSLContext, TokenSource | None]:
    """guard's credential from a kubeconfig context or the pod's service account."""
    if cluster.in_cluster:
        cred = kubeconfig.in_cluster_credential()
    else:
        assert cluster.kubeconfig is not None
        cred = kubeconfig.load_credential(cluster.kubeconfig, cluster.context)
    servers = servers or (cred.server.rstrip("/"),)
    ctx = _ssl_from_data(cred.ca_data, cred.client_cert_data, cred.client_key_data, cred.insecure,
                         cluster.ca_file, cluster.insecure_skip_tls_verify)
    source = None
    if cred.plugin is not None and not token:  # a token the settings name wins over the plugin's
        first = PluginToken(token=cred.token, expires=cred.expires)
        source = TokenSource(first, cred.plugin, where=f"{cluster.kubeconfig} (clusters[{cluster.name}])")
    return token or cred.token, servers, ctx, source


def _ssl_context(ca_file: Path | None, cert_file: Path | None, key_file: Path | None, insecure: bool,
                 at: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file is not None and key_file is not None:
        try:
            ctx.load_cert_chain(str(cert_file), str(key_file))
        except (OSError, ssl.SSLError) as e:
            raise ConfigError([f"{at}.certFile: cannot load certificate and key: {type(e).__name__}"]) from e
    return ctx


def _ssl_from_data(ca: bytes | str | None, cert: bytes | str | None, key: bytes | str | None,
                   insecure: bool, ca_file: Path | None, insecure_override: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if ca and not ca_file:
        ctx.load_verify_locations(cadata=ca.decode() if isinstance(ca, bytes) else ca)
    if insecure or insecure_override:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert and key:
        _load_chain_from_memory(ctx, cert, key)
    return ctx


def _load_chain_from_memory(ctx: ssl.SSLContext, cert: bytes | str, key: bytes | str) -> None:
    """ssl only loads chains from files: write a private temporary file and remove it at once."""
    data = (cert if isinstance(cert, bytes) else cert.encode()) + b"\n" + (
        key if isinstance(key, bytes) else key.encode())
    fd, name = tempfile.mkstemp(prefix="guard-", suffix=".pem")
    try:
        os.write(fd, data)
        os.close(fd)
        ctx.load_cert_chain(name)
    finally:
        os.unlink(name)


def _read_text(path: Path, at: str) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise ConfigError([f"{at}: cannot read {path}: {e.strerror}"]) from e
