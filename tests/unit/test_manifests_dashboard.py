"""manifests/monitoring's Grafana dashboard: its panels cover endpoints, the adaptive limit, edge
authorization and workers, they do not overlap, every query parses (`promtool check rules` on the
queries as recording rules), and every per-tenant panel shows only the tenants of the clusters
`$cluster` selects (evaluated by `promtool test rules` on series of two clusters). The promtool
tests are skipped when promtool is missing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_manifests_alerts import needs_promtool, promtool
from tests.unit.test_manifests_metrics import dashboard, used_in

VARIABLES = {"$namespace": "guard-system", "$__rate_interval": "5m", "$__range": "1h", "${datasource}": "x"}


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def exprs(panel: dict[str, Any]) -> list[str]:
    return [t["expr"] for t in panel.get("targets", [])]


def per_tenant(panel: dict[str, Any]) -> bool:
    """A panel that shows tenants: one of its queries keeps the `tenant` label."""
    return any(re.search(r"by \([^)]*\btenant\b", e) for e in exprs(panel))


def concrete(expr: str, cluster: str) -> str:
    """The query as Grafana sends it, with `$cluster` set to `cluster`."""
    for name, value in {**VARIABLES, "$cluster": cluster}.items():
        expr = expr.replace(name, value)
    return expr


@pytest.mark.parametrize(("section", "metrics"), [
    ("endpoints", {"guard_upstream_endpoint_up", "guard_upstream_endpoint_failures_total",
                   "guard_upstream_endpoint_in_flight", "guard_upstream_endpoint_opens_total"}),
    ("adaptive limit", {"guard_upstream_concurrency_limit", "guard_upstream_concurrency_in_flight",
                        "guard_upstream_concurrency_waiting", "guard_upstream_concurrency_decisions_total"}),
    ("edge authorization", {"guard_authz_allowed_total", "guard_authz_denied_total",
                            "guard_authz_subject_access_reviews_total"}),
    ("workers", {"guard_workers_up", "guard_workers_scrape_errors_total"}),
])
def test_the_dashboard_covers_endpoints_the_adaptive_limit_authorization_and_workers(
        section: str, metrics: set[str]) -> None:
    """Circuit state, failures and in flight; limit, in use, held and shed; edge verdicts; workers."""
    used = used_in([e for p in panels() for e in exprs(p)])
    assert metrics <= used, section
    shed = [e for p in panels() for e in exprs(p) if 'decision="overload"' in e]
    assert any("by (tenant)" in e for e in shed), "who the adaptive limit sheds, per tenant"


def test_every_per_tenant_panel_reads_the_cluster_variable() -> None:
    """Each query of a panel that shows tenants is narrowed by `$cluster`."""
    tenants = [p for p in panels() if per_tenant(p)]
    assert len(tenants) >= 5
    for panel in tenants:
        for expr in exprs(panel):
            assert 'cluster=~"$cluster"' in expr, panel["title"]


def test_panels_do_not_overlap_and_fit_the_grid() -> None:
    """Each panel has its own cells of the 24-column grid; ids are unique."""
    taken: dict[tuple[int, int], str] = {}
    for p in dashboard()["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"{p['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = p["title"]
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Every panel query, with the variables filled in, is valid PromQL."""
    queries = [concrete(e, ".*") for p in panels() for e in exprs(p)]
    rules = [{"record": f"dashboard:query{i}", "expr": q} for i, q in enumerate(queries)]
    groups = {"groups": [{"name": "dashboard", "rules": rules}]}
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump(groups))
    out = promtool("check", "rules", "queries.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


SERIES = [  # team-a sends requests only to cluster prod, team-b only to dev
    ('guard_admission_decisions_total{namespace="guard-system", pod="guard-a", cluster="prod", '
     'tenant="team-a", rule="reads", decision="rejected"}', "0+10x20"),
    ('guard_admission_decisions_total{namespace="guard-system", pod="guard-a", cluster="dev", '
     'tenant="team-b", rule="reads", decision="rejected"}', "0+10x20"),
    ('guard_upstream_concurrency_decisions_total{namespace="guard-system", pod="guard-a", cluster="prod", '
     'tenant="team-a", decision="overload"}', "0+10x20"),
    ('guard_upstream_concurrency_decisions_total{namespace="guard-system", pod="guard-a", cluster="dev", '
     'tenant="team-b", decision="overload"}', "0+10x20"),
] + [(f'{metric}{{namespace="guard-system", pod="guard-a", cluster="{cluster}", tenant="{tenant}"{extra}}}',
       values)
      for tenant, cluster in (("team-a", "prod"), ("team-b", "dev"))
      for metric, extra, values in [("guard_admission_rejections_total", ', reason="quota"', "0+10x20"),
                                    ("guard_admission_inflight", "", "3x20")]
] + [(f'guard_bucket_tokens{{namespace="guard-system", pod="guard-a", tenant="{tenant}", rule="reads"}}',
      "7x20") for tenant in ("team-a", "team-b")]  # a tenant's buckets serve every cluster: no cluster label


@needs_promtool
def test_per_tenant_panels_show_only_the_tenants_of_the_selected_cluster(tmp_path: Path) -> None:
    """With `$cluster` = prod every per-tenant query yields team-a only; with all clusters, both."""
    cases = []
    for panel in filter(per_tenant, panels()):
        for expr in exprs(panel):
            for cluster, tenants in (("prod", ["team-a"]), (".*", ["team-a", "team-b"])):
                cases.append({"expr": f"group by (tenant) ({concrete(expr, cluster)})", "eval_time": "10m",
                              "exp_samples": [{"labels": f'{{tenant="{t}"}}', "value": 1} for t in tenants]})
    (tmp_path / "empty.yaml").write_text("groups: []\n")
    tests = {"rule_files": ["empty.yaml"], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in SERIES],
                        "promql_expr_test": cases}]}
    (tmp_path / "dashboard.test.yaml").write_text(yaml.safe_dump(tests))
    out = promtool("test", "rules", "dashboard.test.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
