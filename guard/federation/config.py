"""The `redis:` settings: parse a URL string or a mapping into `RedisSettings`, reporting every error.

The proxy's settings loader calls `parse_redis(raw, where)` for the `redis:` key and merges the
returned problems with its own. Unknown keys are errors, so a typo can never silently disable a
setting. This module only validates shapes; it never opens a connection or reads a secret file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from guard.config import checks as check
from guard.config.checks import Report
from guard.config.paths import FieldPath, dotted

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


def parse_redis(raw: object, where: str) -> tuple[RedisSettings, list[str]]:
    """Validate the `redis:` value (a URL or a mapping); `where` prefixes every problem.

    Read with guard.config.checks, as the other sections and policy files are.
    """
    problems: list[str] = []

    def report(path: FieldPath, message: str) -> None:
        problems.append(f"{where}.{dotted(path)}: {message}" if path else f"{where}: {message}")

    if isinstance(raw, str):
        raw = {"url": raw}
    if not isinstance(raw, dict):
        return RedisSettings(url=""), [f"{where}: must be a URL string or a mapping"]
    section = check.fields(raw, (), report, allowed=_KNOWN, required=("url",))
    values: dict[str, object] = {"url": ""}
    if section is not None:
        _read_values(section, values, report)
    _check_url(values["url"] or None, report)
    _check_combinations(values, report)
    return RedisSettings(**values), problems  # type: ignore[arg-type]


def _read_values(section: Mapping[str, Any], values: dict[str, object], report: Report) -> None:
    for key, attr in _STRINGS.items():
        if key in section and (text := check.text(section[key], (key,), report)) is not None:
            values[attr] = text
    for key, attr in _DURATIONS.items():
        if key in section and (seconds := _positive_duration(section[key], (key,), report)) is not None:
            values[attr] = seconds
    for key, attr in _COUNTS.items():
        if key in section and (count := check.number(section[key], (key,), report, minimum=1,
                                                     integer=True)) is not None:
            values[attr] = int(count)
    if "cluster" in section:
        values["cluster"] = check.flag(section["cluster"], ("cluster",), report)
    if "sentinel" in section:
        values["sentinel"] = _sentinel(section["sentinel"], ("sentinel",), report)


def _positive_duration(raw: object, path: FieldPath, report: Report) -> float | None:
    """Seconds from `0.05`, `50ms`, `2s` or `1m`; more than zero."""
    seconds = check.duration(raw, path, report)
    if seconds is not None and seconds <= 0:
        report(path, "must be a positive duration such as 50ms or 1s")
        return None
    return seconds


def _sentinel(raw: object, path: FieldPath, report: Report) -> SentinelSettings | None:
    keys = ("master", "addresses")
    fields = check.fields(raw, path, report, allowed=set(keys), required=keys)
    if fields is None or not all(key in fields for key in keys):
        return None
    master = check.text(fields["master"], (*path, "master"), report)
    addresses = _addresses(fields["addresses"], (*path, "addresses"), report)
    if master is None or not addresses:
        return None
    return SentinelSettings(master=master, addresses=addresses)


def _addresses(raw: object, path: FieldPath, report: Report) -> tuple[tuple[str, int], ...]:
    if not isinstance(raw, list) or not raw:
        report(path, "must be a non-empty list of host:port")
        return ()
    found: list[tuple[str, int]] = []
    for i, item in enumerate(raw):
        host, _, port = str(item).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            report((*path, i), "must be host:port")
        else:
            found.append((host, int(port)))
    return tuple(found)


def _check_url(url: object, report: Report) -> None:
    if url is None:
        return  # reported as required by check.fields
    parts = urlsplit(str(url))
    if parts.scheme not in _SCHEMES:
        report(("url",), f"scheme must be one of {', '.join(_SCHEMES)}")
    elif parts.scheme != "unix" and not parts.hostname:
        report(("url",), "needs a host")
    else:
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            report(("url",), "malformed port")


def _check_combinations(values: dict[str, object], report: Report) -> None:
    tls_files = [k for k in ("ca_file", "cert_file", "key_file") if values.get(k)]
    if tls_files and not str(values.get("url", "")).startswith("rediss://"):
        report((), "caFile/certFile/keyFile need a rediss:// URL")
    if bool(values.get("cert_file")) != bool(values.get("key_file")):
        report((), "certFile and keyFile go together")
    if values.get("password") and values.get("password_file"):
        report((), "give password or passwordFile, not both")
    if values.get("cluster") and values.get("sentinel"):
        report((), "cluster and sentinel exclude each other")
