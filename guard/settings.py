"""guard.yaml: parse, validate everything, report every error at once (file and field named), then run.

Values are frozen dataclasses. Unknown keys are errors, so a typo can never silently disable a
setting. This module reads one file and builds values; it must never open a socket, start a task or
put a secret into an error message.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from guard.admission.adaptive import AdaptiveSettings, parse_adaptive
from guard.authz import AuthorizeSettings, parse_authorize
from guard.errors import ConfigError
from guard.routing.config import HealthSettings, check_routes, parse_health, parse_hosts
from guard.routing.router import NAME
from guard.settings_fields import Fields, parse_address, parse_url

Forwarding = Literal["passthrough", "impersonate"]


@dataclass(frozen=True)
class Address:
    """A listen address. host "" would mean every interface; guard always names one."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TLSSettings:
    cert: Path
    """Serving certificate chain (PEM)."""
    key: Path
    """Its private key (PEM)."""
    client_ca: Path | None = None
    """CA that signs client certificates (CN = user, O = groups); None: no certificate users."""


@dataclass(frozen=True)
class ClusterSettings:
    """One upstream cluster and guard's own credential to it."""

    name: str
    servers: tuple[str, ...] = ()
    """api-server endpoint URLs; empty only when kubeconfig or inCluster supplies the server."""
    token: str | None = field(default=None, repr=False)
    """guard's bearer token (never logged; redacted in /debug/guard/config)."""
    token_file: Path | None = None
    """File holding guard's bearer token; re-read on every reload so rotation works."""
    kubeconfig: Path | None = None
    """Kubeconfig holding guard's credential (and the server when `server` is absent)."""
    context: str | None = None
    """Context of `kubeconfig` to use; None: its current-context."""
    in_cluster: bool = False
    """Use the pod's service account (token, CA, KUBERNETES_SERVICE_HOST)."""
    ca_file: Path | None = None
    """CA bundle that verifies the api-server; None: the system store."""
    cert_file: Path | None = None
    """Client certificate guard presents to the api-server."""
    key_file: Path | None = None
    """Its private key."""
    insecure_skip_tls_verify: bool = False
    """Do not verify the api-server's certificate (tests only)."""
    authorize: AuthorizeSettings = field(default_factory=AuthorizeSettings)
    """Edge authorization by cached SubjectAccessReviews (guard.authz); off by default."""
    hosts: tuple[str, ...] = ()
    """Host names (Host header, else TLS server name) whose requests go to this cluster."""
    default: bool = False
    """Requests no prefix or host routes go here; without any `default: true`, the first cluster."""
    health: HealthSettings = field(default_factory=HealthSettings)
    """Circuit breaking, active checks and slow start of its endpoints (guard.routing)."""
    adaptive: AdaptiveSettings = field(default_factory=AdaptiveSettings)
    """The adaptive concurrency limit of its ordinary requests (guard.admission.adaptive); off
    unless the section is present."""


@dataclass(frozen=True)
class LimitSettings:
    max_header_bytes: int = 16384
    """Largest request line or header field, bytes; bigger requests get 400 before any work."""
    max_body_bytes: int = 3 * 1024 * 1024
    """Largest request body, bytes; the api-server's own limit is 3 MiB."""
    max_connections: int = 10000
    """Client connections served at once; more are closed right after accept."""
    idle_timeout: float = 90.0
    """Seconds a keep-alive client connection may sit idle."""
    request_timeout: float = 60.0
    """Seconds an ordinary request may take upstream (watches, logs and exec are exempt)."""
    drain_timeout: float = 15.0
    """Seconds SIGTERM waits for ordinary requests to finish before closing them."""


@dataclass(frozen=True)
class AccessLogSettings:
    enabled: bool = True
    """Write one JSON line per request."""
    path: Path | None = None
    """File to append to; None: standard output."""
    quiet_tenants: tuple[str, ...] = ()
    """Tenants whose requests are not logged (`quietTenants`), e.g. a chatty system tenant."""


@dataclass(frozen=True)
class Settings:
    """Everything `guard serve` runs with. `identity`, `admission` and `redis` are opaque here: their
    owners' parsers validate them."""

    source: str
    """The file these settings came from (for messages)."""
    listen: Address
    admin: Address | None
    clusters: tuple[ClusterSettings, ...]
    tls: TLSSettings | None = None
    forwarding: Forwarding = "passthrough"
    """passthrough: forward the caller's token; impersonate: guard's credential + Impersonate-*."""
    identity: Any = None
    limits: LimitSettings = LimitSettings()
    access_log: AccessLogSettings = AccessLogSettings()
    policies: Path | None = None
    """Directory of TenantPolicy files; None: no policies (admit everything)."""
    admission: Any = None
    redis: Any = None

    @property
    def cluster(self) -> ClusterSettings:
        """The default cluster: the one marked `default: true`, else the first."""
        return next((c for c in self.clusters if c.default), self.clusters[0])


TOP_KEYS = ("listen", "tls", "admin", "clusters", "forwarding", "identity", "limits", "accessLog",
            "policies", "admission", "redis")
CLUSTER_KEYS = ("name", "server", "servers", "token", "tokenFile", "kubeconfig", "context", "inCluster",
                "caFile", "certFile", "keyFile", "insecureSkipTLSVerify", "authorize", "hosts", "default",
                "health", "adaptive")


def load(path: str | Path, *, overrides: Mapping[str, object] | None = None) -> Settings:
    """Read and validate `path`; raise ConfigError listing every problem. `overrides` replace
    top-level keys (the command line's --listen, --admin-listen, --redis)."""
    name = str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError([f"{name}: cannot read: {e.strerror}"]) from e
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{name}:{where}: not valid YAML"]) from e
    if raw is None:
        raw = {}
    if isinstance(raw, dict) and overrides:
        raw = _override(raw, overrides)
    return parse(raw, name, base=Path(path).parent)


def _override(raw: dict[str, object], overrides: Mapping[str, object]) -> dict[str, object]:
    """Command-line values replace top-level keys, except that `--redis URL` replaces only the URL of
    a `redis:` mapping: its publicKey, bundleDir, ... stay (a Secret supplies the URL in a pod)."""
    merged = dict(raw)
    for key, value in overrides.items():
        if value is None:
            continue
        section = merged.get(key)
        merged[key] = {**section, "url": value} if key == "redis" and isinstance(section, dict) else value
    return merged


def parse(raw: object, name: str, *, base: Path = Path(".")) -> Settings:
    """Validate a parsed document; raise ConfigError with every problem found."""
    f = Fields(name, base)
    doc = f.mapping(raw, "", TOP_KEYS, required=("listen", "clusters"))
    listen = parse_address(f, doc.get("listen"), "listen")
    admin = parse_address(f, doc["admin"], "admin") if doc.get("admin") is not None else None
    clusters = _clusters(f, doc.get("clusters"))
    settings = Settings(
        source=name,
        listen=listen or Address("127.0.0.1", 0),
        admin=admin,
        clusters=clusters,
        tls=_tls(f, doc["tls"]) if doc.get("tls") is not None else None,
        forwarding=f.choice(doc.get("forwarding", "passthrough"), "forwarding",
                            ("passthrough", "impersonate")),
        identity=_delegate(f, "guard.authn", "parse_identity", doc.get("identity"), "identity"),
        limits=_limits(f, doc.get("limits")),
        access_log=_access_log(f, doc.get("accessLog")),
        policies=f.path(doc.get("policies"), "policies", directory=True),
        admission=_optional(f, "guard.admission.config", "parse_admission", doc.get("admission"),
                            "admission"),
        redis=_optional(f, "guard.federation.config", "parse_redis", doc.get("redis"), "redis"),
    )
    if f.problems:
        raise ConfigError(f.problems)
    return settings


def _tls(f: Fields, raw: object) -> TLSSettings | None:
    m = f.mapping(raw, "tls", ("cert", "key", "clientCA"), required=("cert", "key"))
    cert, key = f.path(m.get("cert"), "tls.cert"), f.path(m.get("key"), "tls.key")
    client_ca = f.path(m.get("clientCA"), "tls.clientCA")
    return TLSSettings(cert, key, client_ca) if cert and key else None


def _clusters(f: Fields, raw: object) -> tuple[ClusterSettings, ...]:
    if not isinstance(raw, list) or not raw:
        if raw is not None:
            f.error("clusters", "must be a list of at least one cluster")
        return ()
    parsed = (_cluster(f, item, f"clusters[{i}]") for i, item in enumerate(raw))
    clusters = tuple(c for c in parsed if c is not None)
    check_routes(f, [(c.name, c.hosts, c.default) for c in clusters])
    return clusters


def _cluster(f: Fields, raw: object, at: str) -> ClusterSettings | None:
    m = f.mapping(raw, at, CLUSTER_KEYS, required=("name",))
    if not m:
        return None
    servers = _servers(f, m, at)
    sources = [k for k in ("token", "tokenFile", "kubeconfig", "inCluster") if m.get(k) not in (None, False)]
    if len(sources) > 1:
        f.error(at, f"choose one credential source, not {' and '.join(sources)}")
    named = m.get("server") is not None or m.get("servers") is not None
    if not named and not {"kubeconfig", "inCluster"} & set(sources):
        f.error(at, "needs `server` or `servers` (or kubeconfig / inCluster to supply it)")
    if m.get("context") is not None and m.get("kubeconfig") is None:
        f.error(f"{at}.context", "only meaningful with kubeconfig")
    if (m.get("certFile") is None) != (m.get("keyFile") is None):
        f.error(at, "certFile and keyFile go together")
    return ClusterSettings(
        name=f.string(m.get("name"), f"{at}.name", pattern=NAME.pattern) or "",
        servers=servers,
        token=f.string(m.get("token"), f"{at}.token", secret=True),
        token_file=f.path(m.get("tokenFile"), f"{at}.tokenFile"),
        kubeconfig=f.path(m.get("kubeconfig"), f"{at}.kubeconfig"),
        context=f.string(m.get("context"), f"{at}.context"),
        in_cluster=f.boolean(m.get("inCluster", False), f"{at}.inCluster"),
        ca_file=f.path(m.get("caFile"), f"{at}.caFile"),
        cert_file=f.path(m.get("certFile"), f"{at}.certFile"),
        key_file=f.path(m.get("keyFile"), f"{at}.keyFile"),
        insecure_skip_tls_verify=f.boolean(m.get("insecureSkipTLSVerify", False),
                                           f"{at}.insecureSkipTLSVerify"),
        authorize=parse_authorize(f, m.get("authorize"), f"{at}.authorize"),
        hosts=parse_hosts(f, m.get("hosts"), f"{at}.hosts"),
        default=f.boolean(m.get("default", False), f"{at}.default"),
        health=parse_health(f, m.get("health"), f"{at}.health"),
        adaptive=parse_adaptive(f, m.get("adaptive"), f"{at}.adaptive"),
    )


def _servers(f: Fields, m: Mapping[str, object], at: str) -> tuple[str, ...]:
    if m.get("server") is not None and m.get("servers") is not None:
        f.error(at, "use `server` or `servers`, not both")
        return ()
    if m.get("server") is not None:
        url = parse_url(f, m["server"], f"{at}.server")
        return (url,) if url else ()
    raw = m.get("servers")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        f.error(f"{at}.servers", "must be a non-empty list of http(s) URLs")
        return ()
    urls = [parse_url(f, s, f"{at}.servers[{i}]") for i, s in enumerate(raw)]
    return tuple(u for u in urls if u)


def _limits(f: Fields, raw: object) -> LimitSettings:
    d = LimitSettings()
    m = f.mapping(raw, "limits", ("maxHeaderBytes", "maxBodyBytes", "maxConnections", "idleTimeout",
                                  "requestTimeout", "drainTimeout"))
    return LimitSettings(
        max_header_bytes=f.integer(m.get("maxHeaderBytes", d.max_header_bytes), "limits.maxHeaderBytes",
                                   minimum=1024),
        max_body_bytes=f.integer(m.get("maxBodyBytes", d.max_body_bytes), "limits.maxBodyBytes", minimum=0),
        max_connections=f.integer(m.get("maxConnections", d.max_connections), "limits.maxConnections",
                                  minimum=1),
        idle_timeout=f.seconds(m.get("idleTimeout", d.idle_timeout), "limits.idleTimeout"),
        request_timeout=f.seconds(m.get("requestTimeout", d.request_timeout), "limits.requestTimeout"),
        drain_timeout=f.seconds(m.get("drainTimeout", d.drain_timeout), "limits.drainTimeout"),
    )


def _access_log(f: Fields, raw: object) -> AccessLogSettings:
    m = f.mapping(raw, "accessLog", ("enabled", "path", "quietTenants"))
    quiet = m.get("quietTenants", [])
    if not isinstance(quiet, list) or not all(isinstance(t, str) for t in quiet):
        f.error("accessLog.quietTenants", "must be a list of tenant names")
        quiet = []
    return AccessLogSettings(
        enabled=f.boolean(m.get("enabled", True), "accessLog.enabled"),
        path=f.path(m.get("path"), "accessLog.path", must_exist=False),
        quiet_tenants=tuple(quiet),
    )


def _delegate(f: Fields, module: str, func: str, raw: object, key: str) -> object:
    """Hand a section to its owner's parser, when that module exists (it may not be built yet)."""
    parser = _find_parser(module, func)
    if parser is None:
        return raw
    value, problems = parser(raw, f"{f.name}: {key}")
    f.problems.extend(problems)
    return value


def _optional(f: Fields, module: str, func: str, raw: object, key: str) -> object:
    """An optional section: absent stays None (the embedded store, no admission settings)."""
    return None if raw is None else _delegate(f, module, func, raw, key)


def _find_parser(module: str, func: str) -> Callable[[object, str], tuple[object, list[str]]] | None:
    try:
        found: Callable[[object, str], tuple[object, list[str]]] | None = getattr(
            importlib.import_module(module), func, None)
    except ModuleNotFoundError as e:
        if e.name is None or not module.startswith(e.name):
            raise
        return None
    return found
