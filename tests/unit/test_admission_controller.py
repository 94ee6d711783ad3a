"""The admission controller: quotas with 429 answers clients honour, caps, queues, shadow, reload."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from guard.admission.config import AdmissionSettings, PriorityLevel, parse_admission
from guard.admission.controller import AdmissionController
from guard.admission.embedded import EmbeddedStore
from guard.kube.identity import Identity
from guard.kube.requestinfo import classify
from tests.doubles import FakeClock

ROOT = Path(__file__).resolve().parents[2]
HEAD = "apiVersion: guard.io/v1alpha1\nkind: TenantPolicy\nmetadata: {name: %s}\nspec:\n"
ALICE = Identity("alice", ("team-a",))
GET = classify("GET", "/api/v1/namespaces/a/pods/p", {})
LIST = classify("GET", "/api/v1/namespaces/a/pods", {"limit": "500"})
WATCH = classify("GET", "/api/v1/namespaces/a/pods", {"watch": "true", "resourceVersion": "42"})


def _write(directory: Path, name: str, rules: str) -> None:
    body = HEAD % name + "  subjects: [{kind: Group, name: team-a}]\n  rules:\n" + rules
    (directory / f"{name}.yaml").write_text(body)


def _controller(tmp_path: Path, rules: str, *, settings: AdmissionSettings | None = None,
                clock: FakeClock | None = None) -> AdmissionController:
    _write(tmp_path, "team-a", rules)
    clock = clock or FakeClock()
    return AdmissionController.from_paths([tmp_path], settings or AdmissionSettings(),
                                          EmbeddedStore(clock=clock), clock=clock, sleep=clock.sleep)


async def _outcomes(controller: AdmissionController, n: int, info: object = GET) -> list[str]:
    out = []
    for _ in range(n):
        ticket = await controller.admit(ALICE, info, "dev")  # type: ignore[arg-type]
        ticket.release()
        out.append(ticket.verdict.outcome)
    return out


async def test_over_quota_is_rejected_with_retry_after_and_ratelimit_headers(tmp_path: Path) -> None:
    """Burst 3 admits 3; the 4th is a rejection naming the rule by opaque id with RateLimit headers."""
    controller = _controller(tmp_path, "    - {name: reads, quota: {rate: 1/s, burst: 3, maxWait: 0}}\n")
    assert await _outcomes(controller, 4) == ["admitted"] * 3 + ["rejected"]
    ticket = await controller.admit(ALICE, GET, "dev")
    verdict = ticket.verdict
    assert verdict.retry_after == 1 and "over quota" in verdict.reason
    headers = dict(verdict.headers)
    rule_id = headers["X-Guard-Rule-Id"]
    assert "team-a" not in headers.values() and len(headers["X-Guard-Tenant-Id"]) == 12
    assert headers["RateLimit-Policy"] == f'"{rule_id}";q=3;w=3'
    assert headers["RateLimit"] == f'"{rule_id}";r=0;t=3'
    assert controller.stats.decisions[("dev", "team-a", "reads", "rejected")] == 2
    assert controller.stats.reasons[("dev", "team-a", "quota")] == 2


async def test_sustained_rejection_lengthens_retry_after_up_to_a_cap(tmp_path: Path) -> None:
    """A flow that keeps knocking is told to wait longer (x2 per 10 refusals), never beyond 60 s."""
    controller = _controller(tmp_path, "    - {name: reads, quota: {rate: 1/s, burst: 1, maxWait: 0}}\n")
    waits = []
    for _ in range(80):
        waits.append((await controller.admit(ALICE, GET, "dev")).verdict.retry_after)
    assert waits[1] == 1 and waits[12] == 2 and waits[25] == 4
    assert max(waits) == 60 and waits == sorted(waits)


async def test_the_refill_follows_the_injected_clock(tmp_path: Path) -> None:
    """After waiting Retry-After on the clock, the request is admitted."""
    clock = FakeClock()
    controller = _controller(tmp_path, "    - {name: reads, quota: {rate: 2/s, burst: 1, maxWait: 0}}\n",
                             clock=clock)
    assert await _outcomes(controller, 2) == ["admitted", "rejected"]
    clock.now += 0.5
    assert await _outcomes(controller, 1) == ["admitted"]


async def test_lists_of_a_resource_never_measured_cost_the_most(tmp_path: Path) -> None:
    """A LIST of a resource guard has not seen listed costs the cap (10): a burst of 14 holds one
    LIST and four GETs."""
    controller = _controller(tmp_path, "    - {name: reads, quota: {rate: 1/s, burst: 14}}\n")
    assert await _outcomes(controller, 2, LIST) == ["admitted", "rejected"]
    assert await _outcomes(controller, 4, GET) == ["admitted"] * 4


async def test_observed_counts_price_lists_without_a_limit(tmp_path: Path) -> None:
    """After a LIST saw 900 objects, the next unlimited LIST of that resource costs 10 (the cap)."""
    controller = _controller(tmp_path, "    - {name: reads, quota: {rate: 1/s, burst: 10}}\n")
    info = classify("GET", "/api/v1/namespaces/a/pods", {})
    controller.observe_list("dev", info, 900)
    assert await _outcomes(controller, 2, info) == ["admitted", "rejected"]


async def test_shadow_rules_admit_everything_and_count_what_they_would_reject(tmp_path: Path) -> None:
    """shadow: true turns rejections into admitted `shadow` verdicts, counted."""
    controller = _controller(tmp_path, "    - {name: reads, shadow: true, quota: {rate: 1/s, burst: 2}}\n")
    assert await _outcomes(controller, 5) == ["admitted"] * 2 + ["shadow"] * 3
    assert controller.stats.decisions[("dev", "team-a", "reads", "shadow")] == 3
    assert controller.stats.reasons[("dev", "team-a", "quota")] == 3


async def test_global_shadow_mode_rejects_nothing(tmp_path: Path) -> None:
    """admission.shadow: true applies shadow mode to every rule."""
    settings = AdmissionSettings(shadow=True)
    rules = "    - {name: reads, quota: {rate: 1/s, burst: 1}}\n"
    controller = _controller(tmp_path, rules, settings=settings)
    assert await _outcomes(controller, 3) == ["admitted", "shadow", "shadow"]


async def test_max_inflight_and_max_watches_cap_what_is_held(tmp_path: Path) -> None:
    """The third concurrent request over maxInflight 2 is refused until one is released."""
    rules = "    - {name: watches, verbs: [watch], maxWatches: 1}\n    - {name: reads, maxInflight: 2}\n"
    controller = _controller(tmp_path, rules)
    held = [await controller.admit(ALICE, GET, "dev") for _ in range(2)]
    third = await controller.admit(ALICE, GET, "dev")
    assert third.verdict.outcome == "rejected" and "in flight" in third.verdict.reason
    held[0].release()
    assert (await controller.admit(ALICE, GET, "dev")).verdict.outcome == "admitted"
    watch = await controller.admit(ALICE, WATCH, "dev")
    assert watch.verdict.outcome == "admitted"
    assert (await controller.admit(ALICE, WATCH, "dev")).verdict.outcome == "rejected"
    watch.release()
    assert (await controller.admit(ALICE, WATCH, "dev")).verdict.outcome == "admitted"


async def test_requests_queue_for_a_seat_and_time_out_when_none_frees(tmp_path: Path) -> None:
    """With 1 seat busy, the next request waits and is admitted as `queued` when the seat frees;
    a request whose wait runs out is rejected."""
    level = PriorityLevel("global-default", seats=1, queues=4, hand_size=2, max_queue_wait=0.05)
    settings = AdmissionSettings(priority_levels=(level, PriorityLevel("catch-all")))
    controller = _controller(tmp_path, "    - {name: reads}\n", settings=settings)
    first = await controller.admit(ALICE, GET, "dev")
    waiting = asyncio.ensure_future(controller.admit(ALICE, GET, "dev"))
    await asyncio.sleep(0)
    assert controller.snapshot_queues()[0]["waiting"] == 1
    first.release()
    second = await waiting
    assert second.verdict.outcome == "queued"
    timed_out = await controller.admit(ALICE, GET, "dev")
    assert timed_out.verdict.outcome == "rejected" and "Timed out" in timed_out.verdict.reason
    second.release()
    assert controller.seats_in_use()["global-default"] == 0
    assert controller.stats.queue_waits["global-default"].count == 1


async def test_a_brief_burst_over_quota_waits_for_its_tokens_instead_of_429(tmp_path: Path) -> None:
    """Burst 2 at 10/s with maxWait 1s: 5 requests at once are all admitted, the 3 over the burst
    after waiting for their tokens (0.1 s apart: never more than the rate), and counted as queued."""
    clock = FakeClock()
    controller = _controller(tmp_path, "    - {name: reads, quota: {rate: 10/s, burst: 2, maxWait: 1s}}\n",
                             clock=clock)
    tickets = await asyncio.gather(*[controller.admit(ALICE, GET, "dev") for _ in range(5)])
    assert sorted(t.verdict.outcome for t in tickets) == ["admitted"] * 2 + ["queued"] * 3
    assert clock.now == pytest.approx(1000.3)  # the third token came 0.3 s later, not sooner
    assert controller.stats.quota_waits["team-a"].count == 3


async def test_a_wait_longer_than_max_wait_is_refused_at_once(tmp_path: Path) -> None:
    """At 1/s a request over quota would wait 1 s; maxWait 500ms refuses it at once with Retry-After."""
    clock = FakeClock()
    controller = _controller(tmp_path, "    - {name: reads, quota: {rate: 1/s, burst: 1, maxWait: 500ms}}\n",
                             clock=clock)
    assert await _outcomes(controller, 2) == ["admitted", "rejected"]
    assert clock.now == 1000.0  # nobody waited


async def test_no_more_wait_on_a_bucket_than_it_can_serve_within_max_wait(tmp_path: Path) -> None:
    """At 2/s with maxWait 1s, at most 2 requests wait for a token at once; the rest are refused
    now rather than held for a token they could not get in time."""
    clock = FakeClock()
    gate = asyncio.Event()

    async def slow_sleep(seconds: float) -> None:
        await gate.wait()
        clock.now += seconds

    _write(tmp_path, "team-a", "    - {name: reads, quota: {rate: 2/s, burst: 1, maxWait: 1s}}\n")
    controller = AdmissionController.from_paths([tmp_path], AdmissionSettings(), EmbeddedStore(clock=clock),
                                                clock=clock, sleep=slow_sleep)
    first = await controller.admit(ALICE, GET, "dev")
    waiting = [asyncio.ensure_future(controller.admit(ALICE, GET, "dev")) for _ in range(4)]
    await asyncio.sleep(0)
    refused = [w for w in waiting if w.done()]
    assert first.verdict.outcome == "admitted" and len(refused) == 2
    assert all(w.result().verdict.outcome == "rejected" for w in refused)
    gate.set()
    outcomes = [(await w).verdict.outcome for w in waiting if w not in refused]
    assert outcomes == ["queued", "queued"]


async def test_exempt_callers_pass_tenant_quotas(tmp_path: Path) -> None:
    """system:masters passes however tight the tenants' quotas are."""
    controller = _controller(tmp_path, "    - {name: reads, quota: {rate: 1/s, burst: 1}}\n")
    root = Identity("root", ("system:masters", "team-a"))
    outcomes = [(await controller.admit(root, GET, "dev")).verdict.outcome for _ in range(20)]
    assert outcomes == ["exempt"] * 20


async def test_even_exempt_traffic_is_bounded_per_identity(tmp_path: Path) -> None:
    """A compromised system:masters identity gets its generous burst (1,000), then 429; another
    master is unaffected; its in-flight requests are capped (200)."""
    controller = _controller(tmp_path, "    - {name: reads}\n")
    root, other = Identity("root", ("system:masters",)), Identity("root-2", ("system:masters",))
    counted = []
    for _ in range(1200):
        ticket = await controller.admit(root, GET, "dev")
        counted.append(ticket.verdict.outcome)
        ticket.release()
    assert (counted.count("exempt"), counted.count("rejected")) == (1000, 200)
    held = [await controller.admit(other, GET, "dev") for _ in range(250)]
    assert [t.verdict.outcome for t in held].count("exempt") == 200


async def test_a_broken_reload_keeps_the_previous_policies(tmp_path: Path) -> None:
    """A bad file is reported and counted; the last good set stays in force; a good one swaps in."""
    controller = _controller(tmp_path, "    - {name: reads, quota: {rate: 1/s, burst: 1, maxWait: 0}}\n")
    (tmp_path / "broken.yaml").write_text(HEAD % "broken" + "  subjects: []\n  rulez: []\n")
    problems = controller.reload([tmp_path])
    assert any("rulez" in p for p in problems)
    assert controller.stats.reload_failures == 1
    assert await _outcomes(controller, 2) == ["admitted", "rejected"]
    (tmp_path / "broken.yaml").unlink()
    _write(tmp_path, "team-a", "    - {name: reads, quota: {rate: 1/s, burst: 5}}\n")
    assert controller.reload([tmp_path]) == []
    assert await _outcomes(controller, 3) == ["admitted"] * 3


async def test_the_example_policies_load_into_a_controller(tmp_path: Path) -> None:
    """policies/ compiles against the default admission settings, and the dumps describe it."""
    shutil.copytree(ROOT / "policies", tmp_path / "p")
    controller = AdmissionController.from_paths([tmp_path / "p"], AdmissionSettings(), EmbeddedStore())
    ticket = await controller.admit(ALICE, GET, "dev")
    assert ticket.verdict.tenant == "team-a" and ticket.verdict.rule == "reads"
    assert controller.snapshot_buckets()[0]["key"] == "{team-a}:reads"
    assert {q.get("level") for q in controller.snapshot_queues()} >= {"global-default", "catch-all"}


def test_an_empty_admission_section_is_valid() -> None:
    """Absent or empty: defaults, no problems."""
    assert parse_admission(None, "guard.yaml: admission") == (AdmissionSettings(), [])
    assert parse_admission({}, "guard.yaml: admission") == (AdmissionSettings(), [])


@pytest.mark.parametrize(("raw", "problem"), [
    ({"shadwo": True}, 'a: admission.shadwo: unknown field "shadwo" (did you mean "shadow"?)'),
    ({"priorityLevels": [{"name": "x", "seats": 0}], "defaultPriorityLevel": "x",
      "catchAll": {"priorityLevel": "x"}}, "a: admission.priorityLevels[0].seats: must be at least 1"),
    ({"catchAll": {"quota": {"rate": "3/q"}}},
     'a: admission.catchAll.quota.rate: "3/q" is not a rate like 20/s, 3000/m'),
    ({"exempt": [{"name": "x", "subjects": [{"kind": "Group", "name": "g"}], "verbs": ["gett"]}]},
     'a: admission.exempt[0].verbs[0]: "gett" is not a Kubernetes verb or HTTP method'),
])
def test_admission_section_problems_name_their_field(raw: object, problem: str) -> None:
    """Every problem names the field at fault (the first one is the cause)."""
    settings, problems = parse_admission(raw, "a: admission")
    assert problems[0] == problem
    assert settings == AdmissionSettings()


@pytest.mark.parametrize(("raw", "problem"), [
    ({"idSecret": "short"}, "a: admission.idSecret: must be a string of at least 16 characters"),
    ({"idSecret": 12345678901234567}, "a: admission.idSecret: must be a string of at least 16 characters"),
])
def test_the_id_secret_is_checked(raw: dict[str, object], problem: str) -> None:
    """admission.idSecret must be long enough to key the ids."""
    assert parse_admission(raw, "a: admission")[1] == [problem]
