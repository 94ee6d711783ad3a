"""The tenant policy as values: who a tenant is, which requests each of its rules covers, and
what each rule allows.

Pure: frozen dataclasses and the parsers of the small textual forms policies use (rates like
`50/s`, durations like `30s`). No YAML, no file I/O; reading and validating files is
`guard.policy.loading` and `guard.policy.schema`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from guard.admission.store import FailMode

API_VERSION = "guard.io/v1alpha1"
KIND = "TenantPolicy"

SubjectKind = Literal["User", "Group", "ServiceAccount"]
Scope = Literal["tenant", "user", "namespace"]

SUBJECT_KINDS: tuple[SubjectKind, ...] = ("User", "Group", "ServiceAccount")
SCOPES: tuple[Scope, ...] = ("tenant", "user", "namespace")
FAIL_MODES: tuple[FailMode, ...] = ("local", "open", "closed")
RESOURCE_VERBS = (
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "connect",
    "proxy",
)
# Non-resource requests carry the lower-cased HTTP method as their verb.
HTTP_VERBS = ("get", "head", "options", "post", "put", "patch", "delete")

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d*(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str) -> float | None:
    """`"50/s"`, `"3000/m"`, `"10/100ms"` -> tokens per second; None when not a positive rate."""
    found = _RATE.match(text)
    if not found:
        return None
    count, multiple, unit = found.groups()
    period = float(multiple or 1) * _UNIT_SECONDS[unit]
    if period <= 0 or float(count) <= 0:
        return None
    return float(count) / period


def parse_duration(value: object) -> float | None:
    """`"30s"`, `"5m"`, `"250ms"` or a number of seconds -> seconds; None when not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    found = _DURATION.match(value)
    return float(found.group(1)) * _UNIT_SECONDS[found.group(2)] if found else None


@dataclass(frozen=True)
class Subject:
    """A member of a tenant. `name` (and a service account's `namespace`) may be `*` or end in `*`."""

    kind: SubjectKind
    name: str
    namespace: str = ""


@dataclass(frozen=True)
class Selector:
    """Which requests a rule covers. None means "any"; entries may be `*`.

    resources follow RBAC: `pods` (not its subresources), `pods/log`, `pods/*`, `*/scale`, `*`.
    namespaces: `*` is any namespace and cluster-scoped requests, `""` is cluster-scoped only,
    `team-*` a prefix. nonResourceURLs: exact paths or a prefix ending in `*`.
    A selector naming resource fields (apiGroups, resources, resourceNames, namespaces) covers
    only resource requests, one naming nonResourceURLs only non-resource requests, one naming
    neither covers both.
    """

    verbs: tuple[str, ...] | None = None
    api_groups: tuple[str, ...] | None = None
    resources: tuple[str, ...] | None = None
    resource_names: tuple[str, ...] | None = None
    namespaces: tuple[str, ...] | None = None
    non_resource_urls: tuple[str, ...] | None = None
    clusters: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Quota:
    """A token bucket: `rate` tokens per second, `burst` banked, one bucket per `scope`."""

    rate: float
    burst: float
    scope: Scope = "tenant"
    fail_mode: FailMode = "local"


@dataclass(frozen=True)
class ListCost:
    """What a LIST costs: `base` + objects / `per_objects`, at most `max`.

    objects is the smaller of the request's `limit` and the count last observed for that
    resource (whichever is known). A watch costs its initial list, then holds a watch seat.
    """

    base: float = 1.0
    per_objects: float = 100.0
    max: float = 10.0


@dataclass(frozen=True)
class Rule:
    """One ordered rule of a tenant: a selector, an optional exclusion (`not:`), and limits."""

    name: str
    selector: Selector = Selector()
    exclude: Selector | None = None
    quota: Quota | None = None
    list_cost: ListCost = ListCost()
    max_inflight: int | None = None
    max_watches: int | None = None
    priority_level: str = ""  # "" = the admission settings' default level
    shadow: bool = False


@dataclass(frozen=True)
class Quarantine:
    """Isolation of a tenant's runaway clients (enforced by `guard.federation.quarantine`)."""

    threshold: int
    window: float
    ttl: float
    rate: float | None = None
    burst: float | None = None


@dataclass(frozen=True)
class TenantPolicy:
    """One tenant: its subjects, the namespaces it owns (their service accounts are members),
    its rules in order, and its precedence among tenants (lower first; ties by file order)."""

    name: str
    subjects: tuple[Subject, ...]
    rules: tuple[Rule, ...]
    namespaces: tuple[str, ...] = ()
    precedence: int = 1000
    quarantine: Quarantine | None = None
    source: str = ""
