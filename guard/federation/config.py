"""The `redis:` settings: parse a URL string or a mapping into `RedisSettings`, reporting every error.

The proxy's settings loader calls `parse_redis(raw, where)` for the `redis:` key and merges the
returned problems with its own. Unknown keys are errors, so a typo can never silently disable a
setting. This module only validates shapes; it never opens a connection or reads a secret file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from guard.config.durations import parse_duration

_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class SentinelSettings:
    """Redis Sentinel: the monitored master's name and the sentinels' `host:port` addresses."""

    master: str
    addresses: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class RedisSettings:
    """Where the shared Redis is and how guard uses it."""

    url: str
    """`redis://[user:password@]host:port/db`, `rediss://...` (TLS) or `unix:///path`."""
    ca_file: str | None = None
    """CA bundle that signs the server's certificate (rediss only)."""
    cert_file: str | None = None
    """Client certificate for mutual TLS (rediss only); needs `key_file`."""
    key_file: str | None = None
    username: str | None = None
    """ACL user; overrides the one in the URL."""
    password: str | None = field(default=None, repr=False)
    """ACL password; overrides the one in the URL. Prefer `password_file`. A secret: `repr=False`
    keeps it out of reprs and /debug/guard/config."""
    password_file: str | None = None
    """File whose first line is the password, read when connecting."""
    cluster: bool = False
    """The URL names one node of a Redis Cluster; keys are hash-tagged per tenant."""
    sentinel: SentinelSettings | None = None
    key_prefix: str = "guard:"
    """Prefix of every key guard writes, so several fleets can share one Redis."""
    tick: float = 0.04
    """Seconds between batched lease refills (25-50 ms is the sweet spot)."""
    lease_ttl: float = 0.25
    """Seconds a lease's tokens stay spendable; also sizes leases (demand x (ttl + rtt))."""
    timeout: float = 0.05
    """Socket and connect timeout in seconds: the most a background call waits on Redis."""
    pool_size: int = 8
    """Connections per replica (a bounded, blocking pool)."""
    heartbeat: float = 1.0
    """Seconds between membership heartbeats; a replica is live for 3 heartbeats."""
    public_key: str | None = None
    """Ed25519 public key (PEM file) that policy bundles must be signed with."""
    bundle_dir: str | None = None
    """Directory keeping the last good policy bundle for restarts while Redis is down."""
    bundle_poll: float = 5.0
    """Seconds between reads of the live bundle: the fallback for a push notification missed
    (pub/sub brings a push at once)."""
    expected_replicas: int = 1
    """The live count N to assume until Redis has answered a heartbeat (replicas are processes:
    `--workers 4` counts four). With Redis down at startup, `failMode: local` admits rate/N."""
    state_dir: str | None = None
    """Directory where the replica remembers the last live count N it saw, so that a restart
    while Redis is down assumes max(expectedReplicas, that N) instead of being alone."""


_STRINGS = {"url": "url", "caFile": "ca_file", "certFile": "cert_file", "keyFile": "key_file",
            "username": "username", "password": "password", "passwordFile": "password_file",
            "keyPrefix": "key_prefix", "publicKey": "public_key", "bundleDir": "bundle_dir",
            "stateDir": "state_dir"}
_DURATIONS = {"tick": "tick", "leaseTTL": "lease_ttl", "timeout": "timeout", "heartbeat": "heartbeat",
              "bundlePoll": "bundle_poll"}
_COUNTS = {"poolSize": "pool_size", "expectedReplicas": "expected_replicas"}
_KNOWN = {*_STRINGS, *_DURATIONS, *_COUNTS, "cluster", "sentinel"}


def _positive_duration(raw: object) -> float | None:
    """Seconds from `0.05`, `50ms`, `2s` or `1m`; None when malformed or not positive."""
    seconds = parse_duration(raw)
    return seconds if seconds else None


def parse_redis(raw: object, where: str) -> tuple[RedisSettings, list[str]]:
    """Validate the `redis:` value (a URL or a mapping); `where` prefixes every problem."""
    if isinstance(raw, str):
        raw = {"url": raw}
    if not isinstance(raw, dict):
        return RedisSettings(url=""), [f"{where}: must be a URL string or a mapping"]
    problems: list[str] = [f"{where}.{key}: unknown key" for key in raw if key not in _KNOWN]
    values: dict[str, object] = {"url": ""}
    _parse_strings(raw, where, values, problems)
    _parse_numbers(raw, where, values, problems)
    if "sentinel" in raw:
        values["sentinel"] = _parse_sentinel(raw["sentinel"], f"{where}.sentinel", problems)
    _check_url(values["url"] or None, where, problems)
    _check_combinations(values, where, problems)
    return RedisSettings(**values), problems  # type: ignore[arg-type]


def _parse_strings(raw: dict[object, object], where: str, values: dict[str, object],
                   problems: list[str]) -> None:
    for key, attr in _STRINGS.items():
        if key not in raw:
            continue
        if isinstance(raw[key], str) and raw[key]:
            values[attr] = raw[key]
        else:
            problems.append(f"{where}.{key}: must be a non-empty string")


def _parse_numbers(raw: dict[object, object], where: str, values: dict[str, object],
                   problems: list[str]) -> None:
    for key, attr in _DURATIONS.items():
        if key in raw:
            seconds = _positive_duration(raw[key])
            if seconds is None:
                problems.append(f"{where}.{key}: must be a positive duration such as 50ms or 1s")
            else:
                values[attr] = seconds
    if "cluster" in raw:
        if isinstance(raw["cluster"], bool):
            values["cluster"] = raw["cluster"]
        else:
            problems.append(f"{where}.cluster: must be true or false")
    for key, attr in _COUNTS.items():
        if key not in raw:
            continue
        count = raw[key]
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            values[attr] = count
        else:
            problems.append(f"{where}.{key}: must be a positive integer")


def _parse_sentinel(raw: object, where: str, problems: list[str]) -> SentinelSettings | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping with master and addresses")
        return None
    problems.extend(f"{where}.{key}: unknown key" for key in raw if key not in ("master", "addresses"))
    master = raw.get("master")
    if not isinstance(master, str) or not master:
        problems.append(f"{where}.master: must be a non-empty string")
    addresses = _parse_addresses(raw.get("addresses"), f"{where}.addresses", problems)
    if not isinstance(master, str) or not master or not addresses:
        return None
    return SentinelSettings(master=master, addresses=addresses)


def _parse_addresses(raw: object, where: str, problems: list[str]) -> tuple[tuple[str, int], ...]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}: must be a non-empty list of host:port")
        return ()
    found: list[tuple[str, int]] = []
    for i, item in enumerate(raw):
        host, _, port = str(item).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            problems.append(f"{where}[{i}]: must be host:port")
        else:
            found.append((host, int(port)))
    return tuple(found)


def _check_url(url: object, where: str, problems: list[str]) -> None:
    if url is None:
        problems.append(f"{where}.url: required")
        return
    parts = urlsplit(str(url))
    if parts.scheme not in _SCHEMES:
        problems.append(f"{where}.url: scheme must be one of {', '.join(_SCHEMES)}")
    elif parts.scheme != "unix" and not parts.hostname:
        problems.append(f"{where}.url: needs a host")
    else:
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            problems.append(f"{where}.url: malformed port")


def _check_combinations(values: dict[str, object], where: str, problems: list[str]) -> None:
    tls_files = [k for k in ("ca_file", "cert_file", "key_file") if values.get(k)]
    if tls_files and not str(values.get("url", "")).startswith("rediss://"):
        problems.append(f"{where}: caFile/certFile/keyFile need a rediss:// URL")
    if bool(values.get("cert_file")) != bool(values.get("key_file")):
        problems.append(f"{where}: certFile and keyFile go together")
    if values.get("password") and values.get("password_file"):
        problems.append(f"{where}: give password or passwordFile, not both")
    if values.get("cluster") and values.get("sentinel"):
        problems.append(f"{where}: cluster and sentinel exclude each other")
