"""Read guard.yaml: parse, validate everything, report every error at once (file and field named).

Unknown keys are errors, so a typo can never silently disable a setting. Each section goes to its
owner's parser. This module reads one file and builds values; it must never open a socket, start a
task or put a secret into an error message. It runs a little past 300 lines because guard.yaml's
own top-level sections (listen, admin, clusters, tls, limits, accessLog) are read here, together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from guard.admission.adaptive import parse_adaptive
from guard.admission.config import parse_admission
from guard.config import documents, yamlbounds
from guard.config.fields import Fields
from guard.federation.config import parse_redis
from guard.identity.authn import parse_identity
from guard.identity.authz import parse_authorize
from guard.kube.errors import ConfigError
from guard.routing.config import check_routes, parse_health, parse_hosts
from guard.routing.router import NAME
from guard.settings.model import (
    DEBUG_ACCESS,
    AccessLogSettings,
    Address,
    AdminSettings,
    ClusterSettings,
    LimitSettings,
    Settings,
    TLSSettings,
)

T = TypeVar("T")

TOP_KEYS = ("listen", "tls", "admin", "clusters", "forwarding", "identity", "limits", "accessLog",
            "policies", "admission", "redis")
LIMIT_KEYS = ("maxHeaderBytes", "maxBodyBytes", "maxConnections", "idleTimeout", "handshakeTimeout",
              "requestTimeout", "bodyTimeout", "writeTimeout", "drainTimeout", "http2MaxStreams",
              "http2MaxHeaderListBytes", "http2MaxResetsPerSecond", "http2GoawayChance")
ADMIN_KEYS = ("address", "debug")
CLUSTER_KEYS = ("name", "server", "servers", "token", "tokenFile", "kubeconfig", "context", "inCluster",
                "caFile", "certFile", "keyFile", "insecureSkipTLSVerify", "authorize", "hosts", "default",
                "health", "adaptive", "labels")
LABEL_NAME = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def load(path: str | Path, *, overrides: Mapping[str, object] | None = None) -> Settings:
    """Read and validate `path`; raise ConfigError listing every problem, each with its line.
    `overrides` replace top-level keys (the command line's --listen, --admin-listen, --redis)."""
    name = str(path)
    try:
        if Path(path).stat().st_size > yamlbounds.MAX_BYTES:
            raise ConfigError([f"{name}: refused: larger than the {yamlbounds.MAX_BYTES} bytes a settings "
                               "file may hold"])
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError([f"{name}: cannot read: {e.strerror}"]) from e
    found, problems = documents.read(text, name)
    if len(found) > 1:
        problems.append(f"{name}: holds {len(found)} YAML documents; settings are one")
    if problems:
        raise ConfigError(problems)
    raw, lines = found[0] if found else ({}, {})
    if isinstance(raw, dict) and overrides:
        raw = _override(raw, overrides)
    try:
        return parse(raw, name, base=Path(path).parent)
    except ConfigError as e:
        raise ConfigError([documents.with_line(p, name, lines) for p in e.problems]) from None


def _override(raw: dict[str, object], overrides: Mapping[str, object]) -> dict[str, object]:
    """Command-line values replace top-level keys, except that `--redis URL` replaces only the URL of
    a `redis:` mapping (its publicKey, bundleDir, ... stay: a Secret supplies the URL in a pod) and
    `--admin-listen ADDR` only the address of an `admin:` mapping (its `debug` stays)."""
    merged = dict(raw)
    for key, value in overrides.items():
        if value is None:
            continue
        section = merged.get(key)
        inner = {"redis": "url", "admin": "address"}.get(key)
        merged[key] = {**section, inner: value} if inner and isinstance(section, dict) else value
    return merged


def parse(raw: object, name: str, *, base: Path = Path(".")) -> Settings:
    """Validate a parsed document; raise ConfigError with every problem found."""
    f = Fields(name, base)
    doc = f.mapping(raw, "", TOP_KEYS, required=("listen", "clusters"))
    listen = parse_address(f, doc.get("listen"), "listen")
    admin = _admin(f, doc["admin"]) if doc.get("admin") is not None else None
    clusters = _clusters(f, doc.get("clusters"))
    if listen is not None and admin is not None and listen.port and listen == admin.address:
        f.error("admin", f"is the same address as listen ({listen}): the admin listener needs its own port")
    settings = Settings(
        source=name,
        listen=listen or Address("127.0.0.1", 0),
        admin=admin,
        clusters=clusters,
        tls=_tls(f, doc["tls"]) if doc.get("tls") is not None else None,
        forwarding=f.choice(doc.get("forwarding", "passthrough"), "forwarding",
                            ("passthrough", "impersonate")),
        identity=_section(f, "identity", parse_identity(doc.get("identity"), f"{name}: identity")),
        limits=_limits(f, doc.get("limits")),
        access_log=_access_log(f, doc.get("accessLog")),
        policies=f.path(doc.get("policies"), "policies", directory=True),
        admission=None if doc.get("admission") is None else _section(
            f, "admission", parse_admission(doc["admission"], f"{name}: admission")),
        redis=None if doc.get("redis") is None else _section(
            f, "redis", parse_redis(doc["redis"], f"{name}: redis")),
    )
    if f.problems:
        raise ConfigError(f.problems)
    return settings


def _admin(f: Fields, raw: object) -> AdminSettings | None:
    """`host:port`, or `{address: host:port, debug: loopback | open | off}`."""
    if not isinstance(raw, dict):
        address = parse_address(f, raw, "admin")
        return AdminSettings(address) if address is not None else None
    m = f.mapping(raw, "admin", ADMIN_KEYS, required=("address",))
    address = parse_address(f, m.get("address"), "admin.address")
    raw_debug = m.get("debug", "loopback")
    debug = f.choice("off" if raw_debug is False else raw_debug, "admin.debug", DEBUG_ACCESS)  # YAML: off
    return AdminSettings(address, debug) if address is not None else None


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
    if not sources and m.get("certFile") is None:
        f.error(at, "needs guard's own credential: token, tokenFile, kubeconfig, inCluster or "
                "certFile/keyFile (guard reviews tokens and forwards with it)")
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
        labels=_labels(f, m.get("labels"), f"{at}.labels"),
    )


def _labels(f: Fields, raw: object, at: str) -> tuple[tuple[str, str], ...]:
    """`{env: prod, region: eu}`: Kubernetes label names and string values."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        f.error(at, "must be a mapping of label names to values")
        return ()
    found: list[tuple[str, str]] = []
    for key, value in raw.items():
        if not isinstance(key, str) or not LABEL_NAME.match(key):
            f.error(f"{at}.{key}", "is not a label name like env or example.com/region")
        elif not isinstance(value, str):
            f.error(f"{at}.{key}", f"must be a string (quote it: \"{value}\")")
        elif not LABEL_VALUE.match(value):
            f.error(f"{at}.{key}", "must be at most 63 letters, digits, '-', '_' or '.', "
                    "starting and ending with a letter or digit")
        else:
            found.append((key, value))
    return tuple(sorted(found))


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
    m = f.mapping(raw, "limits", LIMIT_KEYS)
    return LimitSettings(
        max_header_bytes=f.integer(m.get("maxHeaderBytes", d.max_header_bytes), "limits.maxHeaderBytes",
                                   minimum=1024),
        max_body_bytes=f.integer(m.get("maxBodyBytes", d.max_body_bytes), "limits.maxBodyBytes", minimum=0),
        max_connections=f.integer(m.get("maxConnections", d.max_connections), "limits.maxConnections",
                                  minimum=1),
        idle_timeout=f.seconds(m.get("idleTimeout", d.idle_timeout), "limits.idleTimeout"),
        handshake_timeout=f.seconds(m.get("handshakeTimeout", d.handshake_timeout),
                                    "limits.handshakeTimeout"),
        request_timeout=f.seconds(m.get("requestTimeout", d.request_timeout), "limits.requestTimeout"),
        body_timeout=f.seconds(m.get("bodyTimeout", d.body_timeout), "limits.bodyTimeout"),
        write_timeout=f.seconds(m.get("writeTimeout", d.write_timeout), "limits.writeTimeout"),
        drain_timeout=f.seconds(m.get("drainTimeout", d.drain_timeout), "limits.drainTimeout"),
        http2_max_streams=f.integer(m.get("http2MaxStreams", d.http2_max_streams), "limits.http2MaxStreams",
                                    minimum=0),
        http2_max_header_list_bytes=f.integer(m.get("http2MaxHeaderListBytes", d.http2_max_header_list_bytes),
                                              "limits.http2MaxHeaderListBytes", minimum=4096),
        http2_max_resets_per_second=f.integer(m.get("http2MaxResetsPerSecond", d.http2_max_resets_per_second),
                                              "limits.http2MaxResetsPerSecond", minimum=1),
        http2_goaway_chance=_chance(f, m.get("http2GoawayChance", d.http2_goaway_chance),
                                    "limits.http2GoawayChance"),
    )


def _chance(f: Fields, raw: object, at: str) -> float:
    """A probability from 0 to 0.02, as the api-server bounds `--goaway-chance`."""
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 0.02:
        f.error(at, f"must be a number from 0 to 0.02 (got {raw!r})")
        return 0.0
    return float(raw)


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


def _section(f: Fields, key: str, value: tuple[T, list[str]]) -> T:
    """A section its owner parsed: keep the value, collect the problems (they name `key`)."""
    parsed, problems = value
    f.problems.extend(problems)
    return parsed


def parse_address(f: Fields, raw: object, at: str) -> Address | None:
    """`host:port` or `[v6]:port`; port 0 picks a free port (tests)."""
    if raw is None:
        return None
    text = str(raw) if isinstance(raw, str | int) else ""
    m = re.fullmatch(r"(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d{1,5})", text)
    if not m or int(m.group(3)) > 65535:
        f.error(at, f"must be host:port (got {raw!r})")
        return None
    return Address(host=m.group(1) or m.group(2) or "0.0.0.0", port=int(m.group(3)))


def parse_url(f: Fields, raw: object, at: str) -> str | None:
    """An api-server URL: http(s), a host, no query or fragment. Trailing slash removed."""
    parts = urlsplit(raw) if isinstance(raw, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        f.error(at, "must be an http(s) URL")
        return None
    if parts.query or parts.fragment or parts.username:
        f.error(at, "must not carry a query, fragment or user info")
        return None
    return str(raw).rstrip("/")
