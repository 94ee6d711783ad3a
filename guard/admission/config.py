"""guard.yaml's `admission:` section: priority levels, exempt rules, the catch-all for callers no
tenant claims, and global shadow mode. An empty or absent section is valid and gives defaults.

Pure: validates plain data (already read from YAML) and reports every problem at once; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from guard.config import checks as check
from guard.config.paths import FieldPath, dotted
from guard.policy import schema
from guard.policy.model import Quota, Selector, Subject

ANY_REQUEST = Selector()
CATCH_ALL_QUOTA = Quota(rate=5.0, burst=10.0, scope="user")


@dataclass(frozen=True)
class PriorityLevel:
    """Concurrency seats shared by the rules on this level, with APF-style fair queues in front."""

    name: str
    seats: int = 20  # requests (weighted by cost) in flight at once through this replica
    queues: int = 64  # shuffle-sharded queues; more = less collision between flows
    hand_size: int = 8  # queues a flow may use; it joins the shortest
    queue_length_limit: int = 50  # requests per queue; beyond that, reject
    max_queue_wait: float = 5.0  # seconds a request may wait for a seat, then reject


@dataclass(frozen=True)
class ExemptRule:
    """Requests that never queue behind tenants nor wait for a seat (system traffic the cluster
    needs to live), held only to a generous per-identity bound so that a compromised system
    identity cannot flood the api-server either."""

    name: str
    subjects: tuple[Subject, ...]
    selector: Selector = ANY_REQUEST
    quota: Quota | None = None
    """A token bucket (scope `user`: per identity) beyond which even exempt requests get 429."""
    max_inflight: int | None = None
    """Requests in flight at once per identity; beyond: 429."""


@dataclass(frozen=True)
class CatchAll:
    """The quota of callers that no tenant claims."""

    quota: Quota = CATCH_ALL_QUOTA
    priority_level: str = "catch-all"
    max_inflight: int | None = 10


DEFAULT_LEVELS = (
    PriorityLevel("workload-high", seats=40),
    PriorityLevel("global-default", seats=20),
    PriorityLevel("workload-low", seats=10),
    PriorityLevel("catch-all", seats=5, queues=16, hand_size=4),
)
_LEASES = {"api_groups": ("coordination.k8s.io",), "resources": ("leases",)}
_RENEW = ("get", "create", "update")
_CONTROL_PLANE = (
    Subject("User", "system:kube-controller-manager"),
    Subject("User", "system:kube-scheduler"),
    Subject("ServiceAccount", "*", "kube-system"),
)
"""Who elects leaders among the control plane (APF's system-leader-election and
workload-leader-election flow schemas): kube-controller-manager, kube-scheduler and the
kube-system service accounts (controllers run with their own credentials)."""
DEFAULT_EXEMPT = (
    # APF's `exempt` flow schema: group system:masters.
    ExemptRule("system-masters", (Subject("Group", "system:masters"),),
               quota=Quota(rate=500.0, burst=1000.0, scope="user"), max_inflight=200),
    # APF's `system-node-high`: kubelets' heartbeats (a lease renewal every 10 s, status updates).
    ExemptRule("node-leases", (Subject("Group", "system:nodes"),),
               Selector(verbs=_RENEW, namespaces=("kube-node-lease",), **_LEASES),
               quota=Quota(rate=2.0, burst=20.0, scope="user"), max_inflight=4),
    ExemptRule("node-status", (Subject("Group", "system:nodes"),),
               Selector(verbs=("get", "update", "patch"), api_groups=("",), resources=("nodes/status",)),
               quota=Quota(rate=2.0, burst=20.0, scope="user"), max_inflight=4),
    # APF's `system-leader-election`: leases anywhere, and the legacy endpoints/configmaps locks
    # in kube-system, for the control plane only (it once named every authenticated user).
    ExemptRule("leader-election", _CONTROL_PLANE, Selector(verbs=_RENEW, **_LEASES),
               quota=Quota(rate=10.0, burst=50.0, scope="user"), max_inflight=10),
    ExemptRule("leader-election-legacy-locks", _CONTROL_PLANE,
               Selector(verbs=_RENEW, api_groups=("",), resources=("endpoints", "configmaps"),
                        namespaces=("kube-system",)),
               quota=Quota(rate=10.0, burst=50.0, scope="user"), max_inflight=10),
)


@dataclass(frozen=True)
class AdmissionSettings:
    priority_levels: tuple[PriorityLevel, ...] = DEFAULT_LEVELS
    default_priority_level: str = "global-default"  # for rules that name none
    exempt: tuple[ExemptRule, ...] = DEFAULT_EXEMPT  # `exempt:` in guard.yaml replaces these
    catch_all: CatchAll = CatchAll()
    shadow: bool = False  # count what would be rejected, reject nothing
    id_secret: str = field(default="", repr=False)
    """Keys the opaque tenant and rule ids of responses (`idSecret`); the same in every replica of
    a fleet so they agree on ids. "" = a random secret per process."""

    def level(self, name: str) -> PriorityLevel | None:
        return next((lvl for lvl in self.priority_levels if lvl.name == name), None)


_KEYS = {"priorityLevels", "defaultPriorityLevel", "exempt", "catchAll", "shadow", "idSecret"}
ID_SECRET_LENGTH = 16
_LEVEL_KEYS = {"name", "seats", "queues", "handSize", "queueLengthLimit", "maxQueueWait"}


def parse_admission(raw: object, where: str) -> tuple[AdmissionSettings, list[str]]:
    """The admission section `raw` (None when absent) -> settings and every problem.

    Problems read `{where}.field.path: message`; on problems the settings returned are defaults.
    """
    problems: list[str] = []

    def report(path: FieldPath, message: str) -> None:
        problems.append(f"{where}.{dotted(path)}: {message}" if path else f"{where}: {message}")

    if raw is None:
        return AdmissionSettings(), []
    section = check.fields(raw, (), report, allowed=_KEYS)
    if section is None:
        return AdmissionSettings(), problems
    settings = _settings(section, report)
    if settings.level(settings.default_priority_level) is None:
        report(("defaultPriorityLevel",), f'unknown priority level "{settings.default_priority_level}"')
    if settings.level(settings.catch_all.priority_level) is None:
        report(("catchAll", "priorityLevel"), f'unknown priority level "{settings.catch_all.priority_level}"')
    return (settings if not problems else AdmissionSettings()), problems


def _settings(section: Mapping[str, Any], report: check.Report) -> AdmissionSettings:
    values: dict[str, Any] = {}
    if "priorityLevels" in section:
        values["priority_levels"] = _levels(section["priorityLevels"], report)
    if "defaultPriorityLevel" in section:
        values["default_priority_level"] = (
            check.text(section["defaultPriorityLevel"], ("defaultPriorityLevel",), report) or "global-default"
        )
    if "exempt" in section:
        values["exempt"] = _exempt(section["exempt"], report)
    if "catchAll" in section:
        values["catch_all"] = _catch_all(section["catchAll"], report)
    if "shadow" in section:
        values["shadow"] = check.flag(section["shadow"], ("shadow",), report)
    if "idSecret" in section:
        secret = section["idSecret"]
        if not isinstance(secret, str) or len(secret) < ID_SECRET_LENGTH:
            report(("idSecret",), f"must be a string of at least {ID_SECRET_LENGTH} characters")
        else:
            values["id_secret"] = secret
    return AdmissionSettings(**values)


def _levels(value: object, report: check.Report) -> tuple[PriorityLevel, ...]:
    if not isinstance(value, list) or not value:
        report(("priorityLevels",), "must be a non-empty list of priority levels")
        return DEFAULT_LEVELS
    levels = [_level(item, ("priorityLevels", i), report) for i, item in enumerate(value)]
    found = tuple(lvl for lvl in levels if lvl is not None)
    names = [lvl.name for lvl in found]
    for name in sorted({n for n in names if names.count(n) > 1}):
        report(("priorityLevels",), f'duplicate priority level "{name}"')
    return found


def _level(value: object, path: FieldPath, report: check.Report) -> PriorityLevel | None:
    raw = check.fields(value, path, report, allowed=_LEVEL_KEYS, required=("name",))
    if raw is None or "name" not in raw:
        return None
    name = check.text(raw["name"], (*path, "name"), report)
    default = PriorityLevel("")
    counts = {}
    for key, attr in (
        ("seats", "seats"),
        ("queues", "queues"),
        ("handSize", "hand_size"),
        ("queueLengthLimit", "queue_length_limit"),
    ):
        counts[attr] = check.number(
            raw.get(key, getattr(default, attr)), (*path, key), report, minimum=1, integer=True
        )
    wait = check.duration(raw.get("maxQueueWait", default.max_queue_wait), (*path, "maxQueueWait"), report)
    if name is None or wait is None or None in counts.values():
        return None
    level = PriorityLevel(name, max_queue_wait=wait, **{k: int(v or 0) for k, v in counts.items()})
    if level.hand_size > level.queues:
        report((*path, "handSize"), f"must be at most queues ({level.queues})")
    return level


def _exempt(value: object, report: check.Report) -> tuple[ExemptRule, ...]:
    if not isinstance(value, list):
        report(("exempt",), "must be a list of exempt rules")
        return DEFAULT_EXEMPT
    found: list[ExemptRule] = []
    for i, item in enumerate(value):
        path: FieldPath = ("exempt", i)
        raw = check.fields(
            item,
            path,
            report,
            allowed={"name", "subjects", "quota", "maxInflight", *schema.SELECTOR_KEYS},
            required=("name", "subjects"),
        )
        if raw is None or "name" not in raw or "subjects" not in raw:
            continue
        name = check.text(raw["name"], (*path, "name"), report)
        members = schema.subjects(raw["subjects"], (*path, "subjects"), report)
        quota = schema.quota(raw["quota"], (*path, "quota"), report) if "quota" in raw else None
        inflight = (check.number(raw["maxInflight"], (*path, "maxInflight"), report, minimum=1, integer=True)
                    if "maxInflight" in raw else None)
        if name is not None:
            found.append(ExemptRule(name, members, schema.selector(raw, path, report), quota,
                                    int(inflight) if inflight is not None else None))
    return tuple(found)


def _catch_all(value: object, report: check.Report) -> CatchAll:
    raw = check.fields(value, ("catchAll",), report, allowed={"quota", "priorityLevel", "maxInflight"})
    if raw is None:
        return CatchAll()
    default = CatchAll()
    quota = schema.quota(raw["quota"], ("catchAll", "quota"), report) if "quota" in raw else None
    level = check.text(
        raw.get("priorityLevel", default.priority_level), ("catchAll", "priorityLevel"), report
    )
    inflight = (
        check.number(raw["maxInflight"], ("catchAll", "maxInflight"), report, minimum=0, integer=True)
        if "maxInflight" in raw
        else default.max_inflight
    )
    return CatchAll(
        quota or default.quota,
        level or default.priority_level,
        int(inflight) if inflight is not None else None,
    )
