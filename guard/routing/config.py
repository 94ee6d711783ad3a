"""A cluster's `health:` section: circuit breaking, active checks and slow start of its endpoints.

Parsed like every other section (every problem reported, unknown keys are errors). Pure: no file,
no framework; guard.settings hands in its field checker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

HEALTH_KEYS = ("checks", "checkInterval", "checkTimeout", "failures", "coolDown", "slowStart")
HOST_PATTERN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"


@dataclass(frozen=True)
class HealthSettings:
    checks: bool = False
    """GET /readyz on every endpoint every `check_interval` seconds with guard's credential. Off by
    default: connection outcomes of real requests already open and close circuits; turn it on when
    an endpoint can hang (a blackholed address) rather than refuse, so no request waits to find out."""
    check_interval: float = 5.0
    """Seconds between two checks of one endpoint."""
    check_timeout: float = 2.0
    """Seconds a check may take; longer is a failure."""
    failures: int = 3
    """Consecutive failures (refused or broken connections, timeouts, failed checks) that open an
    endpoint's circuit: no request goes there until a probe succeeds."""
    cool_down: float = 5.0
    """Seconds an open circuit waits before one request (or a check) probes the endpoint again."""
    slow_start: float = 30.0
    """Seconds over which an endpoint that came back ramps from a tenth to its full share of new
    requests, so a restarted api-server is not flattened by the herd; 0 turns it off."""


class Fields(Protocol):
    """guard.config.fields.Fields' shape (named here so this module stays free of settings I/O)."""

    def error(self, at: str, message: str) -> None: ...
    def mapping(self, raw: object, at: str, known: Sequence[str], *,
                required: Sequence[str] = ()) -> Mapping[str, object]: ...
    def string(self, raw: object, at: str, *, pattern: str | None = None,
               secret: bool = False) -> str | None: ...
    def boolean(self, raw: object, at: str) -> bool: ...
    def integer(self, raw: object, at: str, *, minimum: int) -> int: ...
    def seconds(self, raw: object, at: str) -> float: ...


def parse_health(f: Fields, raw: object, at: str) -> HealthSettings:
    """The `health:` section of a cluster; every problem goes to `f`, naming `at.field`."""
    d = HealthSettings()
    if raw is None:
        return d
    m = f.mapping(raw, at, HEALTH_KEYS)
    slow_start = m.get("slowStart", d.slow_start)
    off = slow_start == 0 and not isinstance(slow_start, bool)
    slow_start_s = 0.0 if off else f.seconds(slow_start, f"{at}.slowStart")
    return HealthSettings(
        checks=f.boolean(m.get("checks", d.checks), f"{at}.checks"),
        check_interval=f.seconds(m.get("checkInterval", d.check_interval), f"{at}.checkInterval"),
        check_timeout=f.seconds(m.get("checkTimeout", d.check_timeout), f"{at}.checkTimeout"),
        failures=f.integer(m.get("failures", d.failures), f"{at}.failures", minimum=1),
        cool_down=f.seconds(m.get("coolDown", d.cool_down), f"{at}.coolDown"),
        slow_start=slow_start_s,
    )


def parse_hosts(f: Fields, raw: object, at: str) -> tuple[str, ...]:
    """A cluster's `hosts:`: DNS names, compared in lower case; no ports, no wildcards."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        f.error(at, "must be a list of host names")
        return ()
    found = [f.string(h.lower().rstrip(".") if isinstance(h, str) else h, f"{at}[{i}]", pattern=HOST_PATTERN)
             for i, h in enumerate(raw)]
    return tuple(dict.fromkeys(h for h in found if h))


def check_routes(f: Fields, clusters: Sequence[tuple[str, Sequence[str], bool]]) -> None:
    """Every (name, hosts, default) names one cluster: distinct names, each host routed to one
    cluster, at most one default."""
    names: dict[str, int] = {}
    hosts: dict[str, str] = {}
    for i, (name, own, _) in enumerate(clusters):
        if not name:
            continue  # its name was already reported
        if name in names:
            f.error(f"clusters[{i}].name", f"{name!r} is also clusters[{names[name]}]'s name")
        names.setdefault(name, i)
        for host in own:
            if hosts.setdefault(host, name) != name:
                f.error(f"clusters[{i}].hosts", f"{host!r} already routes to cluster {hosts[host]!r}")
    defaults = [name for name, _, default in clusters if default]
    if len(defaults) > 1:
        f.error("clusters", f"only one cluster may be the default, not {' and '.join(defaults)}")
