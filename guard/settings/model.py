"""guard.yaml as values: what `guard serve` runs with. Each section's owner defines its own value
(identity, admission, redis, a cluster's health, authorize and adaptive sections); this module
composes them. Frozen dataclasses, every field documented; no parsing (`guard.settings.loading`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from guard.admission.adaptive import AdaptiveSettings
from guard.admission.config import AdmissionSettings
from guard.federation.config import RedisSettings
from guard.identity.authn import IdentitySettings
from guard.identity.authz import AuthorizeSettings
from guard.routing.config import HealthSettings

Forwarding = Literal["passthrough", "impersonate"]
DebugAccess = Literal["loopback", "open", "off"]
DEBUG_ACCESS: tuple[DebugAccess, ...] = ("loopback", "open", "off")


@dataclass(frozen=True)
class Address:
    """A listen address. host "" would mean every interface; guard always names one."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class AdminSettings:
    """The admin listener: `admin: host:port`, or `admin: {address: host:port, debug: ...}`."""

    address: Address
    debug: DebugAccess = "loopback"
    """Who may read /debug/guard/*: `loopback` clients only (kubectl port-forward arrives there),
    anyone who reaches the port (`open`), or nobody (`off`). /metrics, /healthz, /livez and /readyz
    answer everyone who reaches the port."""

    @property
    def host(self) -> str:
        return self.address.host

    @property
    def port(self) -> int:
        return self.address.port


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
    """Edge authorization by cached SubjectAccessReviews (guard.identity.authz); off by default."""
    hosts: tuple[str, ...] = ()
    """Host names (Host header, else TLS server name) whose requests go to this cluster."""
    default: bool = False
    """Requests no prefix or host routes go here; without any `default: true`, the first cluster."""
    health: HealthSettings = field(default_factory=HealthSettings)
    """Circuit breaking, active checks and slow start of its endpoints (guard.routing)."""
    adaptive: AdaptiveSettings = field(default_factory=AdaptiveSettings)
    """The adaptive concurrency limit of its ordinary requests (guard.admission.adaptive); off
    unless the section is present."""
    labels: tuple[tuple[str, str], ...] = ()
    """Its labels (`env: prod`), sorted by name: what a policy's `placement` and `overrides`
    select clusters by (guard.policy.placement)."""


@dataclass(frozen=True)
class LimitSettings:
    max_header_bytes: int = 16384
    """Largest request line or header field, bytes; bigger requests get 400 before any work."""
    max_body_bytes: int = 3 * 1024 * 1024
    """Largest request body, bytes; the api-server's own limit is 3 MiB."""
    max_connections: int = 10000
    """Client connections held at once, counted from accept (TLS handshakes included). At the
    limit a new connection replaces the oldest one serving nothing; when all are serving, it is
    closed right after accept."""
    idle_timeout: float = 90.0
    """Seconds a client connection may sit idle: between requests, or from accept to its first
    request head."""
    handshake_timeout: float = 10.0
    """Seconds a TLS handshake may take from accept, and its closing exchange (10 s as Go's
    http.Transport allows a server; the api-server's own listener allows 32 s)."""
    request_timeout: float = 60.0
    """Seconds an ordinary request may take upstream (watches, logs and exec are exempt)."""
    body_timeout: float = 60.0
    """Seconds the whole request body may take to arrive, from its head; later: 408 and close."""
    write_timeout: float = 60.0
    """Seconds a client may take no byte of what guard has queued for it before it is cut (a
    LIST it does not read, a watch or tunnel it stopped reading); reading clients never are."""
    drain_timeout: float = 15.0
    """Seconds SIGTERM waits for ordinary requests to finish before closing them."""
    http2_max_streams: int = 100
    """Streams one HTTP/2 client connection may have open at once (the api-server's
    `--http2-max-streams-per-connection`); 0 offers no HTTP/2 (ALPN http/1.1 only)."""
    http2_max_header_list_bytes: int = 256 * 1024
    """Largest header list of one HTTP/2 request, decompressed; larger ends the connection."""
    http2_max_resets_per_second: int = 100
    """Streams an HTTP/2 client may reset a second on average (bursts of twice that) before guard
    ends its connection with GOAWAY (rapid reset, CVE-2023-44487)."""
    http2_goaway_chance: float = 0.0
    """Chance (0 to 0.02) that a new HTTP/2 stream makes guard tell its client GOAWAY, so that
    clients behind a load balancer spread over the replicas again (the api-server's `--goaway-chance`)."""


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
    """Everything `guard serve` runs with."""

    source: str
    """The file these settings came from (for messages)."""
    listen: Address
    admin: AdminSettings | None
    clusters: tuple[ClusterSettings, ...]
    tls: TLSSettings | None = None
    forwarding: Forwarding = "passthrough"
    """passthrough: forward the caller's token; impersonate: guard's credential + Impersonate-*."""
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    """Bearer-token and certificate identity (guard.identity.authn)."""
    limits: LimitSettings = LimitSettings()
    access_log: AccessLogSettings = AccessLogSettings()
    policies: Path | None = None
    """Directory of TenantPolicy files; None: no policies (admit everything)."""
    admission: AdmissionSettings | None = None
    """Priority levels, exempt rules and the catch-all (guard.admission.config); None: absent."""
    redis: RedisSettings | None = None
    """The shared Redis of a fleet (guard.federation.config); None: the embedded store."""

    @property
    def cluster(self) -> ClusterSettings:
        """The default cluster: the one marked `default: true`, else the first."""
        return next((c for c in self.clusters if c.default), self.clusters[0])


