"""What placement and overrides mean for the clusters a settings file names: `guard policy show
--cluster NAME [--config guard.yaml] DIR` prints the effective policies one cluster enforces, and
`guard policy validate --config guard.yaml` warns of placements that select none of its clusters.

The settings file is read leniently here (only cluster names and labels): the operator's
guard.yaml may name credential files that exist only where guard runs. Never prints a secret (it
never reads one).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from guard.config import yamlbounds
from guard.config.paths import dotted
from guard.policy import placement, render
from guard.policy.loading import load_policies
from guard.policy.model import TenantPolicy
from guard.policy.placement import Labels


def fleet_clusters(config: str) -> tuple[dict[str, Labels], list[str]]:
    """The clusters of a guard.yaml, name -> labels, and why it could not be read."""
    try:
        doc = yamlbounds.safe_load(Path(config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, yamlbounds.YamlRefused) as e:
        return {}, [f"{config}: cannot be read: {e.__class__.__name__}"]
    raw = doc.get("clusters") if isinstance(doc, dict) else None
    if not isinstance(raw, list):
        return {}, [f"{config}: clusters: must be a list of clusters"]
    found: dict[str, Labels] = {}
    problems: list[str] = []
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        labels = item.get("labels") or {} if isinstance(item, dict) else {}
        if not isinstance(name, str) or not isinstance(labels, dict):
            problems.append(f"{config}: clusters[{i}]: needs a name and labels as a mapping")
            continue
        found[name] = {str(k): str(v) for k, v in labels.items()}
    return found, problems


def warnings(policies: Sequence[TenantPolicy], clusters: dict[str, Labels], config: str) -> list[str]:
    """One line per placement that selects none of `clusters`."""
    known = ", ".join(sorted(clusters)) or "none"
    return [f"{p.source or p.name}: {dotted(path)}: warning: selects no cluster of {config} "
            f"(clusters: {known}); fine if the bundle also serves clusters it does not name"
            for p in policies for path in placement.unplaced(p, clusters)]


def run_show_cluster(cluster: str, config: str | None, paths: Sequence[str]) -> int:
    """Print the policies `cluster` enforces, resolved, as YAML documents; 1 on any problem."""
    policies, problems = load_policies(paths)
    labels: Labels = {}
    if config is not None:
        clusters, more = fleet_clusters(config)
        problems += more
        if not more and cluster not in clusters:
            problems.append(f"{config}: has no cluster {cluster!r} (clusters: {', '.join(sorted(clusters))})")
        labels = clusters.get(cluster, {})
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    shown = placement.effective_set(policies, cluster, labels)
    left_out = [p.name for p in policies if p.name not in {s.name for s in shown}]
    described = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"
    print(f"# effective policies on cluster {cluster} (labels: {described})"
          + ("" if config else "; without --config only placements by name select it"))
    if left_out:
        print(f"# not placed on {cluster}: {', '.join(left_out)}")
    for policy in shown:
        print("---")
        print(f"# from {policy.source}")
        for note in _own(policy, cluster):
            print(f"# {note}")
        sys.stdout.write(yaml.safe_dump(render.document(policy), sort_keys=False))
    return 0


def _own(policy: TenantPolicy, cluster: str) -> list[str]:
    """Notes on the rules an override gave this cluster's own bucket or in-flight counts."""
    notes = []
    for rule in policy.rules:
        if rule.quota_cluster:
            notes.append(f"rule {rule.name}: quota overridden; {cluster} has its own bucket")
        elif rule.caps_cluster:
            notes.append(f"rule {rule.name}: caps overridden; {cluster} counts its own in flight")
    return notes
