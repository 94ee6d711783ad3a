"""A TenantPolicy back as the plain data of its file: what `guard policy show --cluster` prints for
the effective policies of a cluster, in the form `guard policy validate` reads (fields at their
defaults are left out).

Pure: plain dicts and lists, no YAML, no I/O.
"""

from __future__ import annotations

from typing import Any

from guard.policy import model
from guard.policy.model import LabelRequirement, Override, Placement, Quota, Rule, Selector, TenantPolicy
from guard.policy.schema import SELECTOR_KEYS

Document = dict[str, Any]


def document(policy: TenantPolicy) -> Document:
    """The policy as a TenantPolicy document."""
    spec: Document = {"subjects": [_subject(s) for s in policy.subjects]}
    if policy.namespaces:
        spec["namespaces"] = list(policy.namespaces)
    if policy.precedence != 1000:
        spec["precedence"] = policy.precedence
    if policy.placement is not None:
        spec["placement"] = placement(policy.placement)
    spec["rules"] = [rule(r) for r in policy.rules]
    if policy.overrides:
        spec["overrides"] = [_override(o) for o in policy.overrides]
    if policy.quarantine is not None:
        q = policy.quarantine
        spec["quarantine"] = {"threshold": q.threshold, "window": _seconds(q.window), "ttl": _seconds(q.ttl),
                              **({"rate": rate(q.rate)} if q.rate is not None else {}),
                              **({"burst": _number(q.burst)} if q.burst is not None else {})}
    return {"apiVersion": model.API_VERSION, "kind": model.KIND, "metadata": {"name": policy.name},
            "spec": spec}


def rule(r: Rule) -> Document:
    out: Document = {"name": r.name, **_selector(r.selector)}
    if r.exclude is not None:
        out["not"] = _selector(r.exclude)
    if r.placement is not None:
        out["placement"] = placement(r.placement)
    out.update(_limits(r.quota, r.max_inflight, r.max_watches, r.priority_level or None,
                       r.shadow or None))
    if r.list_cost != model.ListCost():
        c = r.list_cost
        out["cost"] = {"list": {"base": _number(c.base), "perObjects": _number(c.per_objects),
                                "max": _number(c.max), "unmeasured": c.unmeasured}}
    return out


def _limits(q: Quota | None, inflight: int | None, watches: int | None, level: str | None,
            shadow: bool | None) -> Document:
    out: Document = {}
    if q is not None:
        out["quota"] = quota(q)
    if inflight is not None:
        out["maxInflight"] = inflight
    if watches is not None:
        out["maxWatches"] = watches
    if level is not None:
        out["priorityLevel"] = level
    if shadow is not None:
        out["shadow"] = shadow
    return out


def quota(q: Quota) -> Document:
    out: Document = {"rate": rate(q.rate), "burst": _number(q.burst)}
    if q.scope != "tenant":
        out["scope"] = q.scope
    if q.fail_mode != "local":
        out["failMode"] = q.fail_mode
    if q.max_wait != model.DEFAULT_MAX_WAIT:
        out["maxWait"] = _seconds(q.max_wait)
    return out


def rate(per_second: float) -> str:
    """`20/s`, or for less than one a second `1/60s`."""
    if per_second >= 1:
        return f"{per_second:g}/s"
    return f"1/{1 / per_second:g}s"


def placement(p: Placement) -> Document:
    out: Document = {}
    if p.clusters is not None:
        out["clusters"] = list(p.clusters)
    if p.has_selector:
        selector: Document = {}
        if p.match_labels:
            selector["matchLabels"] = dict(p.match_labels)
        if p.match_expressions:
            selector["matchExpressions"] = [_expression(e) for e in p.match_expressions]
        out["selector"] = selector
    return out


def _expression(e: LabelRequirement) -> Document:
    return {"key": e.key, "operator": e.operator, **({"values": list(e.values)} if e.values else {})}


def _override(o: Override) -> Document:
    out = placement(o.placement)
    if o.rules:
        out["rules"] = list(o.rules)
    out["fields"] = _limits(o.quota, o.max_inflight, o.max_watches, o.priority_level, o.shadow)
    return out


def _selector(s: Selector) -> Document:
    values = {"verbs": s.verbs, "apiGroups": s.api_groups, "resources": s.resources,
              "resourceNames": s.resource_names, "namespaces": s.namespaces,
              "nonResourceURLs": s.non_resource_urls, "clusters": s.clusters}
    assert set(values) == set(SELECTOR_KEYS)
    return {key: list(v) for key, v in values.items() if v is not None}


def _subject(s: model.Subject) -> Document:
    return {"kind": s.kind, "name": s.name, **({"namespace": s.namespace} if s.namespace else {})}


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _seconds(value: float) -> str:
    return f"{value:g}s"
