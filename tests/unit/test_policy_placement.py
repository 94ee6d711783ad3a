"""Placement and overrides: the pure resolution (policy + cluster name + labels -> effective policy),
label selectors as Kubernetes has them, compiling one bundle into per-cluster sets, cluster labels in
guard.yaml, and `guard policy show --cluster` / `guard policy validate --config` warnings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema as validator_lib
import pytest
import yaml

from guard.admission.config import AdmissionSettings, parse_admission
from guard.admission.controller import AdmissionController
from guard.admission.embedded import EmbeddedStore
from guard.admission.rules import compile_policies
from guard.kube.errors import ConfigError
from guard.kube.identity import Identity
from guard.kube.requestinfo import classify
from guard.policy import jsonschema, render
from guard.policy.loading import load_text
from guard.policy.model import LabelRequirement, Placement, Quota, TenantPolicy
from guard.policy.placement import effective, effective_set, selects, unplaced
from guard.settings import loading as settings_loading
from guard.telemetry.admin import policies_view

ROOT = Path(__file__).resolve().parents[2]
PROD_EU = {"env": "prod", "region": "eu"}
PROD_US = {"env": "prod", "region": "us"}
DEV = {"env": "dev"}
LEVEL_NAMES = ("workload-high", "global-default", "workload-low", "catch-all", "batch")
LEVELS = {"priorityLevels": [{"name": name} for name in LEVEL_NAMES]}

FLEET_POLICY = """apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {name: team-a}
spec:
  subjects: [{kind: Group, name: team-a}]
  rules:
    - name: prod-lists
      placement: {selector: {matchLabels: {env: prod}}}
      verbs: [list]
      quota: {rate: 1/s, burst: 3}
    - name: reads
      quota: {rate: 10/s, burst: 20}
      maxInflight: 4
  overrides:
    - clusters: [prod-eu]
      rules: [reads]
      fields: {quota: {rate: 50/s, burst: 100}}
    - selector: {matchExpressions: [{key: region, operator: In, values: [eu, us]}]}
      fields: {maxInflight: 8, priorityLevel: batch}
    - clusters: [prod-eu]
      fields: {maxInflight: 16, shadow: true}
"""


def _policy(text: str = FLEET_POLICY) -> TenantPolicy:
    policies, problems = load_text(text, "p.yaml")
    assert problems == []
    return policies[0]


@pytest.mark.parametrize(("placement", "cluster", "labels", "placed"), [
    (None, "any", {}, True),
    (Placement(clusters=("prod-eu",)), "prod-eu", {}, True),
    (Placement(clusters=("prod-eu",)), "prod-us", PROD_US, False),
    (Placement(match_labels=(("env", "prod"),)), "prod-us", PROD_US, True),
    (Placement(match_labels=(("env", "prod"),)), "dev", DEV, False),
    (Placement(match_labels=()), "dev", DEV, True),  # an empty selector selects everything
    (Placement(clusters=("dev",), match_labels=(("env", "prod"),)), "dev", DEV, True),  # name or selector
    (Placement(match_expressions=(LabelRequirement("region", "In", ("eu",)),)), "prod-eu", PROD_EU, True),
    (Placement(match_expressions=(LabelRequirement("region", "In", ("eu",)),)), "dev", DEV, False),
    (Placement(match_expressions=(LabelRequirement("region", "NotIn", ("eu",)),)), "dev", DEV, True),
    (Placement(match_expressions=(LabelRequirement("region", "NotIn", ("eu",)),)), "prod-eu", PROD_EU, False),
    (Placement(match_expressions=(LabelRequirement("region", "Exists"),)), "prod-us", PROD_US, True),
    (Placement(match_expressions=(LabelRequirement("region", "Exists"),)), "dev", DEV, False),
    (Placement(match_expressions=(LabelRequirement("region", "DoesNotExist"),)), "dev", DEV, True),
    (Placement(match_labels=(("env", "prod"),),
               match_expressions=(LabelRequirement("region", "In", ("us",)),)), "prod-eu", PROD_EU, False),
])
def test_selects_as_kubernetes_label_selectors_do(placement: Placement | None, cluster: str,
                                                   labels: dict[str, str], placed: bool) -> None:
    assert selects(placement, cluster, labels) is placed


def test_a_policy_placed_elsewhere_is_absent() -> None:
    policy = _policy(FLEET_POLICY.replace("spec:\n", "spec:\n  placement: {clusters: [prod-eu]}\n", 1))
    assert effective(policy, "prod-us", PROD_US) is None
    assert effective(policy, "prod-eu", PROD_EU) is not None
    assert [p.name for p in effective_set([policy], "dev", DEV)] == []


def test_a_placed_rule_applies_only_where_it_is_placed() -> None:
    policy = _policy()
    assert [r.name for r in effective(policy, "prod-us", PROD_US).rules] == ["prod-lists", "reads"]  # type: ignore[union-attr]
    assert [r.name for r in effective(policy, "dev", DEV).rules] == ["reads"]  # type: ignore[union-attr]


def test_overrides_apply_in_order_and_only_to_the_rules_they_name() -> None:
    policy = _policy()
    eu = {r.name: r for r in effective(policy, "prod-eu", PROD_EU).rules}  # type: ignore[union-attr]
    assert eu["reads"].quota == Quota(50, 100)
    assert eu["reads"].max_inflight == 16 and eu["reads"].shadow  # the later override wins
    assert eu["reads"].priority_level == "batch"
    assert eu["prod-lists"].quota == Quota(1, 3)  # the quota override names only `reads`
    us = {r.name: r for r in effective(policy, "prod-us", PROD_US).rules}  # type: ignore[union-attr]
    assert us["reads"].quota == Quota(10, 20) and us["reads"].max_inflight == 8 and not us["reads"].shadow
    dev = effective(policy, "dev", DEV)
    assert dev is not None and dev.rules[0].max_inflight == 4 and dev.rules[0].priority_level == ""
    assert dev.overrides == () and dev.placement is None


def test_an_overridden_quota_or_cap_is_the_clusters_own() -> None:
    """Elsewhere a rule's bucket is shared fleet-wide; where an override changed its quota (or its
    in-flight cap) the cluster counts on its own, so two different rates never share one bucket."""
    policy = _policy()
    eu = {r.name: r for r in effective(policy, "prod-eu", PROD_EU).rules}  # type: ignore[union-attr]
    us = {r.name: r for r in effective(policy, "prod-us", PROD_US).rules}  # type: ignore[union-attr]
    assert (eu["reads"].quota_cluster, eu["reads"].caps_cluster) == ("prod-eu", "prod-eu")
    assert (us["reads"].quota_cluster, us["reads"].caps_cluster) == ("", "prod-us")
    assert eu["prod-lists"].quota_cluster == "" and eu["prod-lists"].caps_cluster == "prod-eu"


def test_without_placement_the_effective_policy_is_the_policy() -> None:
    plain = _policy(FLEET_POLICY.split("  overrides:")[0].replace(
        "      placement: {selector: {matchLabels: {env: prod}}}\n", ""))
    assert effective(plain, "anywhere", {}) == plain


def test_compiled_sets_serve_each_cluster_its_own_rules_and_buckets() -> None:
    settings, problems = parse_admission(LEVELS, "admission")
    assert problems == []
    clusters = {"prod-eu": PROD_EU, "prod-us": PROD_US, "dev": DEV}
    compiled, problems = compile_policies([_policy()], settings, clusters)
    assert problems == []
    alice = Identity("alice", ("team-a",))
    listing = classify("GET", "/api/v1/namespaces/a/configmaps", {})
    getting = classify("GET", "/api/v1/namespaces/a/configmaps/x", {})
    assert compiled.match(alice, listing, "prod-us").rule.name == "prod-lists"
    assert compiled.match(alice, listing, "dev").rule.name == "reads"
    keys = {c: compiled.match(alice, getting, c).bucket_key for c in clusters}
    assert keys == {"prod-eu": "{team-a}:reads@prod-eu", "prod-us": "{team-a}:reads",
                    "dev": "{team-a}:reads"}
    assert compiled.match(alice, getting, "prod-us").rule.cap_tag == "@prod-us"
    assert compiled.match(alice, getting, "dev").rule.cap_tag == ""
    # A cluster the settings did not name is resolved on its first request, with no labels.
    assert compiled.match(alice, listing, "elsewhere").rule.name == "reads"


def test_an_override_naming_an_unknown_priority_level_is_a_problem() -> None:
    problems = compile_policies([_policy()], AdmissionSettings(), {"prod-eu": PROD_EU})[1]
    assert problems == ['p.yaml: spec.overrides[1].fields.priorityLevel: unknown priority level "batch" '
                        '(known: catch-all, global-default, workload-high, workload-low)']


def test_the_rendered_effective_policy_reads_back_the_same() -> None:
    resolved = effective(_policy(), "prod-eu", PROD_EU)
    assert resolved is not None
    back = _policy(yaml.safe_dump(render.document(resolved)))
    assert [r.quota for r in back.rules] == [r.quota for r in resolved.rules]
    assert [(r.name, r.max_inflight, r.shadow, r.priority_level) for r in back.rules] == [
        (r.name, r.max_inflight, r.shadow, r.priority_level) for r in resolved.rules]
    assert render.rate(1 / 60) == "1/60s" and render.rate(20) == "20/s"


def test_unplaced_names_the_placements_that_select_no_known_cluster() -> None:
    policy = _policy(FLEET_POLICY.replace("clusters: [prod-eu]", "clusters: [prod-asia]"))
    assert unplaced(policy, {"prod-eu": PROD_EU, "dev": DEV}) == [("spec", "overrides", 0),
                                                                  ("spec", "overrides", 2)]
    assert unplaced(policy, {"dev": DEV}) == [("spec", "rules", 0, "placement"), ("spec", "overrides", 0),
                                              ("spec", "overrides", 1), ("spec", "overrides", 2)]


def _settings(labels: str) -> str:
    return ("listen: 127.0.0.1:0\nclusters:\n"
            f"  - {{name: prod-eu, server: http://h, token: t, labels: {labels}}}\n")


def test_cluster_labels_are_read_from_guard_yaml(tmp_path: Path) -> None:
    path = tmp_path / "guard.yaml"
    path.write_text(_settings("{env: prod, example.com/region: eu}"))
    assert settings_loading.load(path).clusters[0].labels == (("env", "prod"), ("example.com/region", "eu"))
    path.write_text(_settings("{env: 3, 'bad key': x, tier: -a}"))
    with pytest.raises(ConfigError) as raised:
        settings_loading.load(path)
    text = "\n".join(raised.value.problems)
    assert "clusters[0].labels.env: must be a string" in text
    assert "clusters[0].labels.bad key: is not a label name" in text
    assert "clusters[0].labels.tier: must be at most 63" in text


def _guard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guard", "policy", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


@pytest.fixture
def fleet_files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "team-a.yaml").write_text(FLEET_POLICY)
    (tmp_path / "policies" / "team-b.yaml").write_text(
        FLEET_POLICY.replace("team-a", "team-b").replace("spec:\n", "spec:\n  placement: {clusters: [dev]}\n",
                                                         1))
    config = tmp_path / "guard.yaml"
    config.write_text("listen: 127.0.0.1:0\nclusters:\n"
                      "  - {name: prod-eu, server: http://h, tokenFile: /absent,"
                      " labels: {env: prod, region: eu}}\n"
                      "  - {name: dev, server: http://h, token: t, labels: {env: dev}}\n"
                      f"admission: {{priorityLevels: [{', '.join(f'{{name: {n}}}' for n in LEVEL_NAMES)}]}}"
                      "\n")
    return tmp_path / "policies", config


def test_show_cluster_prints_the_effective_policies(fleet_files: tuple[Path, Path]) -> None:
    policies, config = fleet_files
    done = _guard("show", "--cluster", "prod-eu", "--config", str(config), str(policies))
    assert done.returncode == 0, done.stderr
    assert "# not placed on prod-eu: team-b" in done.stdout
    assert "rule reads: quota overridden; prod-eu has its own bucket" in done.stdout
    shown = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert [d["metadata"]["name"] for d in shown] == ["team-a"]
    reads = shown[0]["spec"]["rules"][1]
    assert reads["quota"] == {"rate": "50/s", "burst": 100} and reads["maxInflight"] == 16
    assert "overrides" not in shown[0]["spec"]
    dev = _guard("show", "--cluster", "dev", "--config", str(config), str(policies))
    assert [d["spec"]["rules"][0]["name"] for d in yaml.safe_load_all(dev.stdout) if d] == ["reads", "reads"]
    unknown = _guard("show", "--cluster", "nowhere", "--config", str(config), str(policies))
    assert unknown.returncode == 1 and "has no cluster 'nowhere'" in unknown.stderr


def test_validate_warns_of_placements_that_select_no_cluster(fleet_files: tuple[Path, Path]) -> None:
    policies, config = fleet_files
    (policies / "team-b.yaml").write_text((policies / "team-b.yaml").read_text().replace("[dev]", "[stage]"))
    done = _guard("validate", "--config", str(config), str(policies))
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(warned) == 1 and "team-b.yaml: spec.placement: warning: selects no cluster" in warned[0]
    without = _guard("validate", str(policies))  # no settings file: no clusters to check placements against
    assert "warning" not in without.stderr and "batch" in without.stderr


def test_placement_and_overrides_are_valid_under_the_schema_and_the_crd() -> None:
    document = yaml.safe_load(FLEET_POLICY)
    validator_lib.validate(document, jsonschema.json_schema())
    crd = jsonschema.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    validator_lib.Draft202012Validator(crd).validate(document)
    document["spec"]["overrides"][0]["fields"]["cost"] = 1  # not a field an override may change
    with pytest.raises(validator_lib.ValidationError):
        validator_lib.validate(document, jsonschema.json_schema())


def test_the_example_in_docs_federation_validates() -> None:
    text = (ROOT / "docs" / "federation.md").read_text()
    section = text[text.index("## Placement and overrides"):]
    spec = section.split("```yaml\n")[2].split("```")[0]
    _policy("apiVersion: guard.io/v1alpha1\nkind: TenantPolicy\nmetadata: {name: team-a}\n" + spec)


def test_the_debug_page_shows_what_each_cluster_enforces() -> None:
    settings = parse_admission(LEVELS, "admission")[0]
    controller = AdmissionController.from_policies([_policy()], settings, EmbeddedStore(),
                                                   clusters={"prod-eu": PROD_EU, "dev": DEV})
    view = policies_view(controller)

    def team_a(tenants: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return next(t["rules"] for t in tenants if t["name"] == "team-a")

    assert [r["bucket"] for r in team_a(view["tenants"])] == ["{team-a}:prod-lists", "{team-a}:reads"]
    eu, dev = team_a(view["clusters"]["prod-eu"]), team_a(view["clusters"]["dev"])
    assert [(r["name"], r["bucket"], r["maxInflight"]) for r in eu] == [
        ("prod-lists", "{team-a}:prod-lists", 16), ("reads", "{team-a}:reads@prod-eu", 16)]
    assert [(r["name"], r["bucket"], r["maxInflight"]) for r in dev] == [("reads", "{team-a}:reads", 4)]
    plain = AdmissionController.from_policies([], settings, EmbeddedStore(), clusters={"dev": DEV})
    assert "clusters" not in policies_view(plain)
