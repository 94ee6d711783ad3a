"""manifests/monitoring: every guard_* series the alerts and the dashboard query is one guard exports,
with the suffix its type gives it (a counter read without `_total` would silently show nothing), and
the alerts that matter exist.

Declared names are found by reading guard/'s sources (wherever a module lives): metric constructors
and metric families with a literal name or an f-string on a literal prefix, and
`add_counters(source, "prefix", ...)` families, whose names are `prefix_KEY_total` for each `int` field
of the stats class STATS names for that prefix (and its extra keys), or `prefix_KEY` for the keys
guard's LEVELS exports as gauges."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.unit.test_manifests_render import ROOT, find, render

GUARD = ROOT / "guard"
SUFFIXES = {"Counter": ("_total",), "CounterMetricFamily": ("_total",), "Gauge": ("",),
            "GaugeMetricFamily": ("",), "Histogram": ("_bucket", "_sum", "_count"),
            "HistogramMetricFamily": ("_bucket", "_sum", "_count"), "Summary": ("_sum", "_count")}
FAMILY = re.compile(r"\b(" + "|".join(SUFFIXES) + r")\(\s*\"(guard_[a-z0-9_]+)\"")
# `name = "guard_upstream_concurrency"` ... `GaugeMetricFamily(f"{name}_limit", ...)` in one module
PREFIX = re.compile(r"^\s*([a-z_][a-z0-9_]*) = \"(guard_[a-z0-9_]+)\"$", re.MULTILINE)
FAMILY_F = re.compile(r"\b(" + "|".join(SUFFIXES) + r")\(\s*f\"\{([a-z_][a-z0-9_]*)\}(_[a-z0-9_]+)\"")
ADD_COUNTERS = re.compile(r"add_counters\(\s*[^,()]+(?:\([^()]*\))?\s*,\s*\"(guard_[a-z0-9_]+)\"")
LEVELS_SET = re.compile(r"^LEVELS = frozenset\(\{([^}]*)\}\)", re.MULTILINE)
STATS = {  # add_counters prefix -> (the stats class its source exports, keys it adds to that class's)
    "guard_identity": ("AuthnStats", {"subject_access_reviews"}),
    "guard_authz": ("AuthzStats", set()),
    "guard_federation": ("LeaseStats", {"degraded", "live_replicas"}),
    "guard_federation_health": ("HealthStats", set()),
    "guard_quarantine": ("QuarantineStats", {"active"}),
    "guard_bundles": ("BundleStats", {"version"}),
    "guard_connections": ("ConnectionStats", {"open"}),
    "guard_shed": ("ShedStats", {"orders"}),
}
USED = re.compile(r"\bguard_[a-z0-9_]+")
ALERTS = {"GuardDown", "GuardUpstreamUnreachable", "GuardTenantHighRejectionRatio", "GuardRedisDegraded",
          "GuardRedisFallbackActive", "GuardReloadRejected", "GuardClientQuarantined",
          "GuardEndpointCircuitOpen", "GuardEndpointFlapping", "GuardAdaptiveLimitShedding",
          "GuardShedOrderInForce", "GuardShedOrderRefused"}
RUNBOOKS = "https://github.com/guard-proxy/guard/blob/main/"
"""Where every alert's runbook_url points: the project's repository (docs/deploying.md, "Alerts")."""


@functools.cache
def declared() -> frozenset[str]:
    """Every series name guard/ exports, as Prometheus shows it."""
    modules = [p.read_text() for p in GUARD.rglob("*.py")]
    sources = "\n".join(modules)
    families = FAMILY.findall(sources)
    for text in modules:
        prefixes: dict[str, set[str]] = {}
        for var, value in PREFIX.findall(text):
            prefixes.setdefault(var, set()).add(value)
        families += [(kind, prefix + rest) for kind, var, rest in FAMILY_F.findall(text)
                     for prefix in prefixes.get(var, ())]
    names = {base.removesuffix("_total") + suffix for kind, base in families for suffix in SUFFIXES[kind]}
    levels_found = LEVELS_SET.search(sources)
    assert levels_found, "guard declares LEVELS = frozenset({...}) (the add_counters keys that are gauges)"
    levels = set(re.findall(r"\"([a-z_]+)\"", levels_found[1]))
    prefixes = set(ADD_COUNTERS.findall(sources))
    assert prefixes == STATS.keys(), "name the stats class of each add_counters family in STATS"
    for prefix, (stats, extra) in STATS.items():
        assert all(f'"{key}"' in sources for key in extra), prefix
        for key in int_fields(stats, sources) | extra:
            names.add(f"{prefix}_{key}" if key in levels else f"{prefix}_{key}_total")
    return frozenset(names)


def int_fields(cls: str, sources: str) -> set[str]:
    """The `name: int` fields of the class `cls` in guard's sources."""
    found = re.search(rf"^class {cls}\b.*?:\n((?:[ \t]+.*\n|\n)+)", sources, re.MULTILINE)
    assert found, f"class {cls} not found in guard/"
    return set(re.findall(r"^    ([a-z][a-z0-9_]*): int\b", found[1], re.MULTILINE))


def _exprs(value: Any) -> Iterator[str]:
    """Every PromQL string in a dashboard: panel targets and template variable queries."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("expr", "query", "definition") and isinstance(item, str):
                yield item
            else:
                yield from _exprs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _exprs(item)


def rules() -> list[dict[str, Any]]:
    (rule,) = find(render("monitoring"), "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def dashboard() -> dict[str, Any]:
    (cm,) = find(render("monitoring"), "ConfigMap", "guard-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    return json.loads(cm["data"]["guard.json"])  # type: ignore[no-any-return]


def used_in(exprs: list[str]) -> set[str]:
    return {name for e in exprs for name in USED.findall(e)}


def test_the_scanner_knows_names_suffixes_and_add_counters_families() -> None:
    """The check can fail: unknown names and counters without _total are not declared."""
    names = declared()
    assert {"guard_requests_total", "guard_request_duration_seconds_bucket",
            "guard_admission_decisions_total", "guard_identity_token_reviews_total"} <= names
    assert "guard_requests" not in names and "guard_admission_decisions" not in names
    assert "guard_request_duration_seconds" not in names and "guard_no_such_metric_total" not in names
    assert "guard_federation_degraded" in names and "guard_federation_degraded_total" not in names
    assert {"guard_upstream_concurrency_limit", "guard_upstream_concurrency_decisions_total",
            "guard_upstream_endpoint_up", "guard_upstream_endpoint_opens_total", "guard_workers_up",
            "guard_authz_denied_total"} <= names
    assert "guard_upstream_concurrency_decisions" not in names and "guard_upstream_concurrency" not in names
    assert "guard_authz_verbs_total" not in names and "guard_federation_endpoint_total" not in names


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_guard_metric_queried_is_declared_by_guard(source: str) -> None:
    """No alert or panel reads a series guard never exports."""
    exprs = [r["expr"] for r in rules()] if source == "alerts" else list(_exprs(dashboard()))
    used = used_in(exprs)
    assert len(used) >= 5
    assert sorted(used - declared()) == []


def test_the_alerts_that_matter_exist_with_severity_and_runbook() -> None:
    """Down, upstream, endpoints, adaptive limit, rejection ratio, Redis, reloads and quarantine alerts;
    each has an absolute runbook_url to its own section of a document in this repository."""
    by_name = {r["alert"]: r for r in rules()}
    assert by_name.keys() >= ALERTS
    for name, rule in by_name.items():
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert "runbook" not in rule["annotations"], "runbook_url, the name Alertmanager templates expect"
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOKS), url
        path, anchor = url.removeprefix(RUNBOOKS).split("#")
        headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(), re.MULTILINE)
        assert anchor == name.lower() and anchor in [h.strip().lower() for h in headings], name


def test_the_dashboard_shows_tenants_latency_queues_reviews_and_federation() -> None:
    """Panels cover decisions per tenant, p99 latency, in-flight, queue wait, TokenReviews, federation."""
    used = used_in(list(_exprs(dashboard())))
    for name in ("guard_admission_decisions_total", "guard_request_duration_seconds_bucket",
                 "guard_admission_inflight", "guard_admission_queue_wait_seconds_bucket",
                 "guard_identity_token_reviews_total", "guard_federation_degraded"):
        assert name in used, name
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_alerts_read_up_of_the_job_the_service_monitor_produces() -> None:
    """`up{job="guard-admin"}`: the Prometheus Operator names the job after the scraped Service."""
    (admin,) = find(render("base"), "Service", "guard-admin")
    jobs = {m for r in rules() for m in re.findall(r'up\{job="([^"]+)"', r["expr"])}
    assert jobs == {admin["metadata"]["name"]}


def relabel(labels: dict[str, str], configs: list[dict[str, Any]]) -> dict[str, str]:
    """Prometheus's `replace` and `labeldrop` relabelling, as a ServiceMonitor's metricRelabelings do."""
    out = dict(labels)
    for c in configs:
        action, regex = c.get("action", "replace"), re.compile(c.get("regex", "(.*)"))
        if action == "labeldrop":
            out = {k: v for k, v in out.items() if not regex.fullmatch(k)}
            continue
        assert action == "replace", action
        value = c.get("separator", ";").join(out.get(name, "") for name in c.get("sourceLabels", []))
        match = regex.fullmatch(value)
        if match:
            result = match.expand(c.get("replacement", "$1").replace("$", "\\"))
            if result:
                out[c["targetLabel"]] = result
            else:
                out.pop(c["targetLabel"], None)
    return out


SCRAPED = {"job": "guard-admin", "namespace": "guard-system", "pod": "guard-a", "service": "guard-admin",
           "endpoint": "admin"}  # what the Prometheus Operator adds to every series of this ServiceMonitor


@pytest.mark.parametrize(("exposed", "stored"), [
    ({"__name__": "guard_upstream_endpoint_up", "cluster": "prod", "exported_endpoint": "https://10.0.0.1:6443"},
     {"__name__": "guard_upstream_endpoint_up", "cluster": "prod", "endpoint": "https://10.0.0.1:6443"}),
    ({"__name__": "guard_requests_total", "cluster": "prod", "code": "200"},
     {"__name__": "guard_requests_total", "cluster": "prod", "code": "200", "endpoint": "admin"}),
])
def test_guard_endpoint_label_survives_the_operator_endpoint_label(exposed: dict[str, str],
                                                                   stored: dict[str, str]) -> None:
    """guard's `endpoint` (renamed exported_endpoint on the clash) is stored as `endpoint` again."""
    (monitor,) = find(render("monitoring"), "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert not endpoint.get("honorLabels")
    assert relabel({**SCRAPED, **exposed}, endpoint["metricRelabelings"]) == {**SCRAPED, **stored}


def documented_relabellings() -> list[list[dict[str, Any]]]:
    """The metricRelabelings blocks of docs/observability.md's multi-cluster section."""
    text = (ROOT / "docs" / "observability.md").read_text()
    section = text[text.index("#### The `cluster` label in a multi-cluster Prometheus"):]
    section = section[:section.index("\n### ")]
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)]


@pytest.mark.parametrize(("case", "scraped", "stored"), [
    ("external label", {"cluster": "local", "tenant": "a"}, {"guard_cluster": "local", "tenant": "a"}),
    ("external label", {"tenant": "a"}, {"tenant": "a"}),
    ("target label", {"cluster": "prod-eu-1", "exported_cluster": "local"},
     {"cluster": "prod-eu-1", "guard_cluster": "local"}),
    ("target label", {"cluster": "prod-eu-1", "tenant": "a"}, {"cluster": "prod-eu-1", "tenant": "a"}),
])
def test_documented_cluster_relabellings_keep_guard_cluster_apart(case: str, scraped: dict[str, str],
                                                                  stored: dict[str, str]) -> None:
    """Each documented relabelling stores guard's cluster as guard_cluster and leaves yours alone."""
    external, target = documented_relabellings()
    (monitor,) = find(render("monitoring"), "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    configs = endpoint["metricRelabelings"] + (external if case == "external label" else target)
    assert relabel({**SCRAPED, **scraped}, configs) == {**SCRAPED, **stored}
