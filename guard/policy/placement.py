"""Placement and overrides: which policies (and rules) apply on a cluster, with what values.

One bundle serves a whole fleet. A TenantPolicy (or one of its rules) may be placed on some
clusters — by name, or by a label selector over the labels guard.yaml gives each cluster — and
`overrides` change a rule's quota, maxInflight, maxWatches, priorityLevel or shadow on the clusters
they select. `effective(policy, cluster, labels)` resolves all of it into the plain policy that
cluster enforces; everything else (admission, `guard policy show --cluster`) reads only that.

Pure: values in, values out; no I/O, never raises on a policy the validator accepted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from guard.config.paths import FieldPath
from guard.policy.model import LabelRequirement, Override, Placement, Rule, TenantPolicy

Labels = Mapping[str, str]


def selects(placement: Placement | None, cluster: str, labels: Labels) -> bool:
    """Whether `placement` takes in the cluster `cluster` with `labels` (None: every cluster).
    Named in `clusters`, or matched by the selector: either is enough."""
    if placement is None:
        return True
    if placement.clusters is not None and cluster in placement.clusters:
        return True
    return placement.has_selector and _selector_matches(placement, labels)


def _selector_matches(placement: Placement, labels: Labels) -> bool:
    """Kubernetes' label selector: every matchLabels pair and every expression holds."""
    if any(labels.get(key) != value for key, value in placement.match_labels or ()):
        return False
    return all(_holds(req, labels) for req in placement.match_expressions or ())


def _holds(req: LabelRequirement, labels: Labels) -> bool:
    present = req.key in labels
    if req.operator == "Exists":
        return present
    if req.operator == "DoesNotExist":
        return not present
    if req.operator == "In":
        return present and labels[req.key] in req.values
    return not present or labels[req.key] not in req.values  # NotIn, as Kubernetes has it


def effective(policy: TenantPolicy, cluster: str, labels: Labels) -> TenantPolicy | None:
    """The policy as the cluster `cluster` (with `labels`) enforces it: None when the policy is
    not placed there; else only the rules placed there, each with the overrides that select the
    cluster applied in order. The result carries no placement and no overrides."""
    if not selects(policy.placement, cluster, labels):
        return None
    chosen = [o for o in policy.overrides if selects(o.placement, cluster, labels)]
    rules = tuple(_resolve(rule, chosen, cluster) for rule in policy.rules
                  if selects(rule.placement, cluster, labels))
    return dataclasses.replace(policy, rules=rules, placement=None, overrides=())


def effective_set(policies: Iterable[TenantPolicy], cluster: str, labels: Labels) -> list[TenantPolicy]:
    """`effective` of every policy, leaving out those not placed on the cluster."""
    resolved = (effective(policy, cluster, labels) for policy in policies)
    return [policy for policy in resolved if policy is not None]


def _resolve(rule: Rule, overrides: list[Override], cluster: str) -> Rule:
    out = dataclasses.replace(rule, placement=None)
    for o in overrides:
        if o.rules and rule.name not in o.rules:
            continue
        out = dataclasses.replace(
            out,
            quota=o.quota if o.quota is not None else out.quota,
            max_inflight=o.max_inflight if o.max_inflight is not None else out.max_inflight,
            max_watches=o.max_watches if o.max_watches is not None else out.max_watches,
            priority_level=o.priority_level if o.priority_level is not None else out.priority_level,
            shadow=o.shadow if o.shadow is not None else out.shadow,
            quota_cluster=cluster if o.quota is not None else out.quota_cluster,
            caps_cluster=cluster if o.max_inflight is not None or o.max_watches is not None
            else out.caps_cluster,
        )
    return out


def uses_placement(policies: Iterable[TenantPolicy]) -> bool:
    """Whether any policy or rule is placed or overridden (else every cluster enforces the same)."""
    return any(p.placement is not None or p.overrides or any(r.placement is not None for r in p.rules)
               for p in policies)


def unplaced(policy: TenantPolicy, clusters: Mapping[str, Labels]) -> list[FieldPath]:
    """Where `policy` places something (the policy, a rule, an override) on none of `clusters`:
    not wrong in itself (a bundle spans clusters one settings file does not know), but worth a
    warning, since it is also what a misspelt name or label looks like."""
    def nowhere(placement: Placement | None) -> bool:
        return placement is not None and not any(selects(placement, n, lbl) for n, lbl in clusters.items())

    found: list[FieldPath] = [("spec", "placement")] if nowhere(policy.placement) else []
    found += [("spec", "rules", i, "placement") for i, r in enumerate(policy.rules) if nowhere(r.placement)]
    found += [("spec", "overrides", i) for i, o in enumerate(policy.overrides) if nowhere(o.placement)]
    return found
