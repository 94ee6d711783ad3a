"""Observability units: object counts from LIST bodies, the admission collector at scrape time, the
access-log line's decision fields, and the policies debug view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from guard.admission.config import AdmissionSettings
from guard.admission.controller import AdmissionController
from guard.admission.decision import AdmitAll
from guard.admission.embedded import EmbeddedStore
from guard.admission.listsize import ListSizer, count_objects, remaining_items
from guard.kube.identity import Identity
from guard.kube.requestinfo import classify
from guard.telemetry.accesslog import AccessLog, AccessRecord, line
from guard.telemetry.admin import policies_view
from guard.telemetry.metrics import GuardMetrics
from tests.doubles import FakeClock

ALICE = Identity("alice", ("team-a",))
GET = classify("GET", "/api/v1/namespaces/a/pods/p", {})
PODS = classify("GET", "/api/v1/namespaces/a/pods", {})
POLICY = """apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {name: team-a}
spec:
  subjects: [{kind: Group, name: team-a}]
  rules:
    - {name: reads, quota: {rate: 1/m, burst: 2}}
"""


def _list(n: int, *, compact: bool, meta: dict[str, object] | None = None) -> bytes:
    items = [{"metadata": {"name": f"p{i}", "resourceVersion": str(i)}, "spec": {"x": "y" * 50}}
             for i in range(n)]
    body = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7", **(meta or {})},
            "items": items}
    return json.dumps(body, separators=(",", ":") if compact else None).encode()


def _table(rows: int) -> bytes:
    row = [{"cells": [f"p{i}", "Running"], "object": {"metadata": {"resourceVersion": "1"}}}
           for i in range(rows)]
    return json.dumps({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "7"},
                       "rows": row}).encode()


@pytest.mark.parametrize(("body", "objects"), [
    (_list(0, compact=True), 0),
    (_list(3, compact=True), 3),
    (_list(250, compact=False), 250),
    (_table(12), 12),
])
def test_objects_are_counted_from_the_bytes(body: bytes, objects: int) -> None:
    """One resourceVersion per object plus the list's own; one `cells` per Table row."""
    assert count_objects(body) == objects


@pytest.mark.parametrize(("meta", "expected"), [
    ({}, None),
    ({"continue": "abc", "remainingItemCount": 42}, 42),
])
def test_remaining_item_count_is_read_from_the_head(meta: dict[str, object], expected: int | None) -> None:
    """`metadata.remainingItemCount` of a page, spaced or compact."""
    assert remaining_items(_list(2, compact=False, meta=meta)) == expected
    assert remaining_items(_list(2, compact=True, meta=meta)) == expected


def test_the_count_recorded_for_a_whole_body_covers_the_full_list_only() -> None:
    """A complete list records its count; a first page records count + remaining; a page without a
    remaining count records nothing."""
    sizer = ListSizer()
    limited = classify("GET", "/api/v1/namespaces/a/pods", {"limit": "5"})
    assert sizer.whole("dev", PODS, _list(7, compact=True)) == 7
    page = _list(5, compact=True, meta={"continue": "t", "remainingItemCount": 95})
    assert sizer.whole("dev", limited, page) == 100
    assert sizer.whole("dev", limited, _list(5, compact=True, meta={"continue": "t"})) is None


def test_a_streamed_list_is_estimated_from_the_learnt_object_size() -> None:
    """Nothing is known before a whole body was seen; then bytes / average object size."""
    sizer = ListSizer()
    assert sizer.streamed("dev", PODS, 1_000_000) is None
    body = _list(10, compact=True)
    sizer.whole("dev", classify("GET", "/api/v1/namespaces/b/pods", {}), body)
    per_object = len(body) / 10
    assert sizer.streamed("dev", PODS, round(per_object * 500)) == 500
    assert sizer.streamed("dev", classify("GET", "/api/v1/namespaces/a/pods", {"limit": "9"}), 10**6) is None
    assert sizer.streamed("other", PODS, 10**6) is None
    assert sizer.streamed("dev", PODS, 10**6, encoding="protobuf") is None


def test_each_resource_is_measured_at_most_once_per_interval() -> None:
    """A LIST flood pays for one scan per resource and second, not one per LIST."""
    clock = FakeClock(100.0)
    sizer = ListSizer(clock=clock, interval=1.0)
    assert [sizer.due("dev", PODS) for _ in range(3)] == [True, False, False]
    assert sizer.due("dev", classify("GET", "/api/v1/namespaces/b/pods", {}))
    clock.now += 1.0
    assert sizer.due("dev", PODS)


def _controller(tmp_path: Path, clock: FakeClock) -> AdmissionController:
    (tmp_path / "team-a.yaml").write_text(POLICY)
    return AdmissionController.from_paths([tmp_path], AdmissionSettings(), EmbeddedStore(clock=clock),
                                          clock=clock)


async def _admit(controller: AdmissionController, n: int) -> None:
    for _ in range(n):
        (await controller.admit(ALICE, GET, "dev")).release()


async def test_counters_survive_a_reload_that_builds_a_new_controller(tmp_path: Path) -> None:
    """The collector sums retired controllers: after a settings reload the totals keep growing."""
    clock, metrics, inflight = FakeClock(100.0), GuardMetrics(), {("dev", "team-a"): 2}
    current = _controller(tmp_path, clock)
    metrics.watch_admission(lambda: ("dev", current), lambda: inflight)
    await _admit(current, 3)
    first = generate_latest(metrics.registry).decode()
    current = _controller(tmp_path, clock)
    await _admit(current, 3)
    text = generate_latest(metrics.registry).decode()
    labels = 'cluster="dev",decision="{}",rule="reads",tenant="team-a"'
    assert f"guard_admission_decisions_total{{{labels.format('rejected')}}} 1.0" in first
    assert f"guard_admission_decisions_total{{{labels.format('admitted')}}} 4.0" in text
    assert f"guard_admission_decisions_total{{{labels.format('rejected')}}} 2.0" in text
    assert 'guard_admission_inflight{cluster="dev",tenant="team-a"} 2.0' in text


async def test_queue_waits_and_policy_reloads_are_exported(tmp_path: Path) -> None:
    """Waits become a cumulative histogram per priority level; reloads are counted by result."""
    metrics = GuardMetrics()
    controller = _controller(tmp_path, FakeClock(100.0))
    metrics.watch_admission(lambda: ("dev", controller), dict)
    for seconds in (0.002, 0.02, 3.0):
        controller.stats.waited("workload-low", seconds)
    (tmp_path / "broken.yaml").write_text("kind: TenantPolicy\nspec: {rules: 3}\n")
    assert controller.reload([tmp_path])
    text = generate_latest(metrics.registry).decode()
    assert 'guard_admission_queue_wait_seconds_bucket{le="0.005",priority_level="workload-low"} 1.0' in text
    assert 'guard_admission_queue_wait_seconds_bucket{le="2.5",priority_level="workload-low"} 2.0' in text
    assert 'guard_admission_queue_wait_seconds_count{priority_level="workload-low"} 3.0' in text
    assert 'guard_policy_reloads_total{result="rejected"} 1.0' in text


def test_without_admission_nothing_admission_specific_is_exported() -> None:
    """AdmitAll (no policies) yields empty admission families and an 'off' policies page."""
    metrics = GuardMetrics()
    metrics.watch_admission(lambda: ("dev", AdmitAll()), dict)
    text = generate_latest(metrics.registry).decode()
    assert "guard_admission_decisions_total{" not in text and "guard_bucket_tokens{" not in text
    assert policies_view(AdmitAll()) == {"admission": "off", "tenants": []}


def _record(tenant: str, status: int, retry_after: int) -> AccessRecord:
    return AccessRecord(identity=ALICE, info=GET, method="GET", status=status, bytes=0, latency=0.001,
                        cluster="dev", remote="127.0.0.1", decision="rejected" if retry_after else "admitted",
                        tenant=tenant, rule="reads", retry_after=retry_after)


def test_an_access_line_carries_the_decision() -> None:
    """tenant, rule, decision and the Retry-After the client was told."""
    entry = line(_record("team-a", 429, 4))
    assert (entry["status"], entry["decision"], entry["tenant"], entry["rule"], entry["retry_after"]) == (
        429, "rejected", "team-a", "reads", 4)


def test_quiet_tenants_are_left_out_of_the_access_log(tmp_path: Path) -> None:
    """accessLog quiet tenants: their lines are dropped, every other tenant's kept."""
    log = AccessLog(tmp_path / "access.log", quiet_tenants=frozenset({"system"}))
    log.write(_record("system", 200, 0))
    log.write(_record("team-a", 200, 0))
    log.close()
    tenants = [json.loads(x)["tenant"] for x in (tmp_path / "access.log").read_text().splitlines()]
    assert tenants == ["team-a"]


@pytest.mark.parametrize(("value", "problem"), [
    ("[system, kube]", ""), ("3", "must be a list of tenant names")])
def test_quiet_tenants_are_read_from_the_settings(tmp_path: Path, value: str, problem: str) -> None:
    """accessLog.quietTenants is a list of tenant names; anything else is an error naming the field."""
    from guard import settings
    from guard.kube.errors import ConfigError

    path = tmp_path / "guard.yaml"
    path.write_text("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nclusters:\n  - name: dev\n"
                    f"    server: http://127.0.0.1:1\n    token: t\naccessLog: {{quietTenants: {value}}}\n")
    if not problem:
        assert settings.load(path).access_log.quiet_tenants == ("system", "kube")
        return
    with pytest.raises(ConfigError, match=f"accessLog.quietTenants: {problem}"):
        settings.load(path)


def test_plain_counter_sources_export_levels_as_gauges() -> None:
    """A store's counters() mixes counts and levels: counts get `_total`, levels (degraded, live
    replicas, active quarantines, bundle version) are gauges."""
    metrics = GuardMetrics()
    counts = {"lease_calls": 3, "degraded": 1, "live_replicas": 2}
    metrics.add_counters(lambda: counts, "guard_federation", "x")
    text = generate_latest(metrics.registry).decode()
    assert "guard_federation_lease_calls_total 3.0" in text
    assert "# TYPE guard_federation_degraded gauge" in text and "guard_federation_degraded 1.0" in text
    assert "guard_federation_live_replicas 2.0" in text and "live_replicas_total" not in text


def test_the_id_secret_never_shows_on_the_config_page() -> None:
    """/debug/guard/config redacts admission.idSecret like every other secret."""
    from guard import settings as settings_module
    from guard.telemetry.admin import config_view

    loaded = settings_module.parse({"listen": "127.0.0.1:0",
                                    "clusters": [{"name": "dev", "server": "http://a:1", "token": "t"}],
                                    "admission": {"idSecret": "do-not-show-this-secret"}}, "guard.yaml")
    assert loaded.admission is not None and loaded.admission.id_secret == "do-not-show-this-secret"
    view = json.dumps(config_view(loaded))
    assert "do-not-show-this-secret" not in view and "<redacted>" in view
