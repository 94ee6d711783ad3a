"""Validate plain data (as read from YAML) into policy values, collecting every problem.

Each problem is a field path plus a message; the caller (`guard.policy.loading`) turns paths
into `file:line: field.path: message`. Unknown keys are problems, so a typo can never silently
disable a limit. Pure: no YAML, no file I/O; never raises on bad input. It runs past 300 lines
because a TenantPolicy's fields (placement and overrides included) are read in one pass, in the
order the schema documents them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

from guard.config import checks as check
from guard.config import durations
from guard.config.checks import Report
from guard.config.paths import FieldPath, dotted
from guard.policy import model
from guard.policy.model import (
    FailMode,
    LabelRequirement,
    ListCost,
    Override,
    Placement,
    Quarantine,
    Quota,
    Rule,
    Selector,
    Subject,
    TenantPolicy,
)

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
SELECTOR_KEYS = {
    "verbs": "verbs",
    "apiGroups": "api_groups",
    "resources": "resources",
    "resourceNames": "resource_names",
    "namespaces": "namespaces",
    "nonResourceURLs": "non_resource_urls",
    "clusters": "clusters",
}
_RESOURCE_KEYS = ("apiGroups", "resources", "resourceNames", "namespaces")
_RULE_KEYS = {
    "name",
    "not",
    "quota",
    "cost",
    "maxInflight",
    "maxWatches",
    "priorityLevel",
    "shadow",
    "placement",
    *SELECTOR_KEYS,
}
PLACEMENT_KEYS = ("clusters", "selector")
OVERRIDE_KEYS = (*PLACEMENT_KEYS, "rules", "fields")
_VERBS = frozenset({*model.RESOURCE_VERBS, *model.HTTP_VERBS, "*"})


def subject(value: object, path: FieldPath, report: Report) -> Subject | None:
    raw = check.fields(value, path, report, allowed={"kind", "name", "namespace"}, required=("kind", "name"))
    if raw is None or "kind" not in raw or "name" not in raw:
        return None
    kind = check.choice(raw["kind"], (*path, "kind"), report, model.SUBJECT_KINDS)
    name = check.text(raw["name"], (*path, "name"), report)
    namespace = ""
    if kind == "ServiceAccount":
        if "namespace" not in raw:
            report((*path, "namespace"), "is required for a ServiceAccount")
            return None
        namespace = check.text(raw["namespace"], (*path, "namespace"), report) or ""
    elif "namespace" in raw:
        report((*path, "namespace"), "is only for a ServiceAccount")
    if kind is None or name is None or (kind == "ServiceAccount" and not namespace):
        return None
    return Subject(cast(model.SubjectKind, kind), name, namespace)


def subjects(value: object, path: FieldPath, report: Report) -> tuple[Subject, ...]:
    if not isinstance(value, list) or not value:
        report(path, "must be a non-empty list of subjects")
        return ()
    parsed = [subject(item, (*path, i), report) for i, item in enumerate(value)]
    return tuple(s for s in parsed if s is not None)


def selector(raw: Mapping[str, Any], path: FieldPath, report: Report) -> Selector:
    """The selector fields of a rule, an exempt rule or a `not:` block."""
    values: dict[str, tuple[str, ...] | None] = {}
    for key, attr in SELECTOR_KEYS.items():
        if key in raw:
            values[attr] = check.texts(raw[key], (*path, key), report)
    for i, verb in enumerate(values.get("verbs") or ()):
        if verb not in _VERBS:
            report((*path, "verbs", i), f"{check.show(verb)} is not a Kubernetes verb or HTTP method")
    if "nonResourceURLs" in raw and any(key in raw for key in _RESOURCE_KEYS):
        message = "cannot be combined with apiGroups, resources, resourceNames or namespaces"
        report((*path, "nonResourceURLs"), message)
    return Selector(**values)


def quota(value: object, path: FieldPath, report: Report) -> Quota | None:
    allowed = {"rate", "burst", "scope", "failMode", "maxWait"}
    raw = check.fields(value, path, report, allowed=allowed, required=("rate",))
    if raw is None or "rate" not in raw:
        return None
    per_second = check.rate(raw["rate"], (*path, "rate"), report)
    burst = check.number(raw["burst"], (*path, "burst"), report, minimum=1) if "burst" in raw else None
    scope = check.choice(raw.get("scope", "tenant"), (*path, "scope"), report, model.SCOPES)
    fail = check.choice(raw.get("failMode", "local"), (*path, "failMode"), report, model.FAIL_MODES)
    wait = check.duration(raw.get("maxWait", model.DEFAULT_MAX_WAIT), (*path, "maxWait"), report)
    if per_second is None or scope is None or fail is None or wait is None or (
            "burst" in raw and burst is None):
        return None
    return Quota(
        per_second,
        burst if burst is not None else max(1.0, per_second),
        cast(model.Scope, scope),
        cast(FailMode, fail),
        wait,
    )


def list_cost(value: object, path: FieldPath, report: Report) -> ListCost:
    raw = check.fields(value, path, report, allowed={"list"})
    if raw is None or "list" not in raw:
        return ListCost()
    where = (*path, "list")
    spec = check.fields(raw["list"], where, report, allowed={"base", "perObjects", "max", "unmeasured"})
    if spec is None:
        return ListCost()
    default = ListCost()
    base = check.number(spec.get("base", default.base), (*where, "base"), report, minimum=0)
    per = check.number(spec.get("perObjects", default.per_objects), (*where, "perObjects"), report, minimum=1)
    top = check.number(spec.get("max", default.max), (*where, "max"), report, minimum=1)
    unmeasured = check.number(spec.get("unmeasured", default.unmeasured), (*where, "unmeasured"), report,
                              minimum=0, integer=True)
    return ListCost(
        base if base is not None else default.base, per or default.per_objects, top or default.max,
        int(unmeasured) if unmeasured is not None else default.unmeasured,
    )


def rule(value: object, path: FieldPath, report: Report) -> Rule | None:
    raw = check.fields(value, path, report, allowed=_RULE_KEYS, required=("name",))
    if raw is None:
        return None
    name = check.text(raw.get("name"), (*path, "name"), report) if "name" in raw else None
    if name is not None and not _NAME.match(name):
        report((*path, "name"), f'"{name}" must be lower-case letters, digits, "-" or "."')
    exclude = None
    if "not" in raw:
        block = check.fields(raw["not"], (*path, "not"), report, allowed=set(SELECTOR_KEYS))
        if block is not None and not block:
            report((*path, "not"), "must name at least one field")
        exclude = selector(block, (*path, "not"), report) if block else None
    limits = _rule_limits(raw, path, report)
    placed = placement(raw["placement"], (*path, "placement"), report) if "placement" in raw else None
    if name is None:
        return None
    return Rule(name=name, selector=selector(raw, path, report), exclude=exclude, placement=placed, **limits)


def _rule_limits(raw: Mapping[str, Any], path: FieldPath, report: Report) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "quota" in raw:
        out["quota"] = quota(raw["quota"], (*path, "quota"), report)
    if "cost" in raw:
        out["list_cost"] = list_cost(raw["cost"], (*path, "cost"), report)
    for key, attr in (("maxInflight", "max_inflight"), ("maxWatches", "max_watches")):
        if key in raw:
            count = check.number(raw[key], (*path, key), report, minimum=0, integer=True)
            out[attr] = int(count) if count is not None else None
    if "priorityLevel" in raw:
        out["priority_level"] = check.text(raw["priorityLevel"], (*path, "priorityLevel"), report) or ""
    if "shadow" in raw:
        out["shadow"] = check.flag(raw["shadow"], (*path, "shadow"), report)
    return out


def placement(value: object, path: FieldPath, report: Report) -> Placement | None:
    """`{clusters: [...], selector: {matchLabels, matchExpressions}}`: either or both."""
    raw = check.fields(value, path, report, allowed=set(PLACEMENT_KEYS))
    if raw is None:
        return None
    return _placement_of(raw, path, report)


def _placement_of(raw: Mapping[str, Any], path: FieldPath, report: Report) -> Placement | None:
    if "clusters" not in raw and "selector" not in raw:
        report(path, "must name clusters or a selector")
        return None
    names = check.texts(raw["clusters"], (*path, "clusters"), report) if "clusters" in raw else None
    if "selector" not in raw:
        return Placement(clusters=names)
    where = (*path, "selector")
    sel = check.fields(raw["selector"], where, report, allowed={"matchLabels", "matchExpressions"})
    if sel is None:
        return None
    labels = _match_labels(sel.get("matchLabels", {}), (*where, "matchLabels"), report)
    expressions = _match_expressions(sel["matchExpressions"], (*where, "matchExpressions"), report) \
        if "matchExpressions" in sel else ()
    return Placement(clusters=names, match_labels=labels, match_expressions=expressions)


def _match_labels(value: object, path: FieldPath, report: Report) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in value.items()):
        report(path, "must be a mapping of label names to string values")
        return ()
    return tuple(sorted(value.items()))


def _match_expressions(value: object, path: FieldPath, report: Report) -> tuple[LabelRequirement, ...]:
    if not isinstance(value, list):
        report(path, "must be a list of {key, operator, values}")
        return ()
    found = []
    for i, item in enumerate(value):
        at = (*path, i)
        raw = check.fields(item, at, report, allowed={"key", "operator", "values"},
                           required=("key", "operator"))
        if raw is None or "key" not in raw or "operator" not in raw:
            continue
        key = check.text(raw["key"], (*at, "key"), report)
        op = check.choice(raw["operator"], (*at, "operator"), report, model.LABEL_OPERATORS)
        values = check.texts(raw["values"], (*at, "values"), report, empty_ok=True) if "values" in raw else ()
        if op in ("In", "NotIn") and not values:
            report((*at, "values"), f"must list at least one value for {op}")
        elif op in ("Exists", "DoesNotExist") and values:
            report((*at, "values"), f"must be empty for {op}")
        if key is not None and op is not None and values is not None:
            found.append(LabelRequirement(key, cast(model.LabelOperator, op), values))
    return tuple(found)


def overrides(value: object, rule_names: set[str], report: Report) -> tuple[Override, ...]:
    path: FieldPath = ("spec", "overrides")
    if not isinstance(value, list):
        report(path, "must be a list of overrides")
        return ()
    parsed = (override(item, (*path, i), rule_names, report) for i, item in enumerate(value))
    return tuple(o for o in parsed if o is not None)


def override(value: object, path: FieldPath, rule_names: set[str], report: Report) -> Override | None:
    """`{clusters and/or selector, rules: [names], fields: {quota, maxInflight, ...}}`."""
    raw = check.fields(value, path, report, allowed=set(OVERRIDE_KEYS), required=("fields",))
    if raw is None:
        return None
    placed = _placement_of(raw, path, report)
    names = check.texts(raw["rules"], (*path, "rules"), report) if "rules" in raw else ()
    for i, name in enumerate(names or ()):
        if name not in rule_names:
            known = ", ".join(sorted(rule_names))
            report((*path, "rules", i), f'no rule "{name}" in this policy (rules: {known})')
    changes = _override_fields(raw.get("fields"), (*path, "fields"), report)
    if placed is None or changes is None:
        return None
    return Override(placement=placed, rules=names or (), **changes)


def _override_fields(value: object, path: FieldPath, report: Report) -> dict[str, Any] | None:
    raw = check.fields(value, path, report, allowed=set(model.OVERRIDE_FIELDS))
    if raw is None:
        return None
    if not raw:
        report(path, f"must change at least one of {', '.join(model.OVERRIDE_FIELDS)}")
        return None
    out = _rule_limits({k: v for k, v in raw.items() if k in model.OVERRIDE_FIELDS}, path, report)
    if out.get("priority_level") == "":
        out["priority_level"] = None  # reported as empty already
    return {k: v for k, v in out.items() if v is not None}


def quarantine(value: object, path: FieldPath, report: Report) -> Quarantine | None:
    raw = check.fields(
        value, path, report, allowed={"threshold", "window", "ttl", "rate", "burst"}, required=("threshold",)
    )
    if raw is None or "threshold" not in raw:
        return None
    threshold = check.number(raw["threshold"], (*path, "threshold"), report, minimum=1, integer=True)
    spans = {}
    for key, default in (("window", 60.0), ("ttl", 300.0)):
        spans[key] = durations.parse_duration(raw.get(key, default))
        if spans[key] is None:
            report((*path, key), f"{check.show(raw[key])} is not a duration like 30s, 5m")
    per_second = check.rate(raw["rate"], (*path, "rate"), report) if "rate" in raw else None
    burst = check.number(raw["burst"], (*path, "burst"), report, minimum=1) if "burst" in raw else None
    window, ttl = spans["window"], spans["ttl"]
    if threshold is None or window is None or ttl is None:
        return None
    return Quarantine(int(threshold), window, ttl, per_second, burst)


def tenant(doc: object, report: Report, *, source: str = "") -> TenantPolicy | None:
    """A whole TenantPolicy document, or None after reporting why not."""
    raw = check.fields(
        doc,
        (),
        report,
        allowed={"apiVersion", "kind", "metadata", "spec"},
        required=("apiVersion", "kind", "metadata", "spec"),
    )
    if raw is None:
        return None
    if "apiVersion" in raw and raw["apiVersion"] != model.API_VERSION:
        report(("apiVersion",), f"{check.show(raw['apiVersion'])} is not {model.API_VERSION}")
    if "kind" in raw and raw["kind"] != model.KIND:
        report(("kind",), f"{check.show(raw['kind'])} is not {model.KIND}")
    meta = check.fields(
        raw.get("metadata", {}),
        ("metadata",),
        report,
        allowed={"name", "labels", "annotations"},
        required=("name",),
    )
    name = check.text(meta["name"], ("metadata", "name"), report) if meta and "name" in meta else None
    if name is not None and not _NAME.match(name):
        report(("metadata", "name"), f'"{name}" must be lower-case letters, digits, "-" or "."')
    spec = check.fields(
        raw.get("spec", {}),
        ("spec",),
        report,
        allowed={"subjects", "namespaces", "rules", "precedence", "quarantine", "placement", "overrides"},
        required=("subjects", "rules"),
    )
    if spec is None or name is None:
        return None
    return _tenant_spec(name, spec, report, source)


def _tenant_spec(name: str, spec: Mapping[str, Any], report: Report, source: str) -> TenantPolicy:
    members = subjects(spec.get("subjects"), ("spec", "subjects"), report) if "subjects" in spec else ()
    owned = (
        check.texts(spec["namespaces"], ("spec", "namespaces"), report, empty_ok=True)
        if "namespaces" in spec
        else ()
    )
    order = (
        check.number(spec["precedence"], ("spec", "precedence"), report, minimum=0, integer=True)
        if "precedence" in spec
        else None
    )
    isolate = quarantine(spec["quarantine"], ("spec", "quarantine"), report) if "quarantine" in spec else None
    placed = placement(spec["placement"], ("spec", "placement"), report) if "placement" in spec else None
    ordered = rules(spec.get("rules"), report)
    changes = overrides(spec["overrides"], {r.name for r in ordered}, report) if "overrides" in spec else ()
    return TenantPolicy(
        name=name,
        subjects=members,
        rules=ordered,
        namespaces=owned or (),
        precedence=int(order) if order is not None else 1000,
        quarantine=isolate,
        source=source,
        placement=placed,
        overrides=changes,
    )


def rules(value: object, report: Report) -> tuple[Rule, ...]:
    path: FieldPath = ("spec", "rules")
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        report(path, "must be a non-empty list of rules")
        return ()
    parsed: list[Rule] = []
    first: dict[str, int] = {}
    for i, item in enumerate(value):
        found = rule(item, (*path, i), report)
        if found is None:
            continue
        if found.name in first:
            report(
                (*path, i, "name"),
                f'duplicate rule name "{found.name}" (first at {dotted((*path, first[found.name]))})',
            )
        first.setdefault(found.name, i)
        parsed.append(found)
    return tuple(parsed)
