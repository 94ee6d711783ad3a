"""Turn what a chaos run recorded into figures (success rate, latency percentiles, upstream rate,
crashes) and judge a scenario's verdict checks against them.

Pure computation over recorded values: no I/O, no clock, no processes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaos.scenario import Check, Scenario
from chaos.workload import Second


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100.0 * len(ordered)) - 1)
    return round(ordered[rank], 2)


def summarize(seconds: Iterable[Second]) -> dict[str, Any]:
    """Totals and percentiles of one client class over a phase."""
    rows = list(seconds)
    latencies = [v for s in rows for v in s.latencies_ms]
    retry = [v for s in rows for v in s.retry_after]
    requests = sum(s.requests for s in rows)
    ok = sum(s.ok for s in rows)
    return {
        "requests": requests,
        "ok": ok,
        "success": round(ok / requests, 4) if requests else None,
        "throttled_429": sum(s.throttled for s in rows),
        "server_errors": sum(s.server_errors for s in rows),
        "other_errors": sum(s.other for s in rows),
        "conn_errors": sum(s.conn_errors for s in rows),
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "retry_after_mean_s": round(sum(retry) / len(retry), 2) if retry else None,
        "retry_after_max_s": max(retry) if retry else None,
    }


def timeline(seconds: Mapping[int, Second], duration_s: float) -> list[dict[str, Any]]:
    """One row per second of the phase, including the silent ones."""
    rows = []
    for t in range(math.ceil(duration_s)):
        s = seconds.get(t, Second())
        rows.append(
            {
                "t": t,
                "requests": s.requests,
                "success": round(s.ok / s.requests, 4) if s.requests else None,
                "throttled_429": s.throttled,
                "errors": s.requests - s.ok - s.throttled,
                "p50_ms": percentile(s.latencies_ms, 50),
                "p99_ms": percentile(s.latencies_ms, 99),
            }
        )
    return rows


def class_upstream(scenario: Scenario, per_user: Mapping[str, int]) -> dict[str, int]:
    """Requests the api-server saw from each client class (summed over the class's users)."""
    totals = {}
    for spec in scenario.clients:
        users = {spec.user_for(i) for i in range(spec.count)}
        totals[spec.name] = sum(per_user.get(u, 0) for u in users)
    return totals


def metric(check: Check, run: Mapping[str, Any]) -> float | None:
    """The actual value a check is about, from one run's summary (None when it cannot be known)."""
    flood = run.get("flood", {}).get(check.client or "", {})
    base = run.get("baseline", {}).get(check.client or "", {})
    duration = float(run.get("duration_s") or 1.0)
    match check.metric:
        case "crashes" | "tokenreviews" | "replicas_down_max" | "unauthenticated":
            value = run.get(check.metric)
        case "success" | "p50_ms" | "p99_ms" | "throttled_429":
            value = flood.get(check.metric)
        case "p99_ratio":
            p99, p99_base = flood.get("p99_ms"), base.get("p99_ms")
            value = None if p99 is None or not p99_base else round(p99 / p99_base, 3)
        case "subjectaccessreviews" if check.client:
            value = run.get("class_subjectaccessreviews", {}).get(check.client)
        case "subjectaccessreviews":
            value = run.get("subjectaccessreviews")
        case "upstream_requests":
            value = run.get("class_upstream", {}).get(check.client)
        case "upstream_rate":
            count = run.get("class_upstream", {}).get(check.client)
            value = None if count is None else round(count / duration, 2)
        case "rejected":
            value = flood.get("throttled_429")
        case _:
            value = None
    return None if value is None else float(value)


@dataclass(frozen=True)
class Judged:
    check: Check
    actual: float | None
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check.describe(), "actual": self.actual, "passed": self.passed}


def judge(scenario: Scenario, runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Each run's checks and whether the run (all/any) and the scenario (the runs made) pass."""
    verdict: dict[str, Any] = {"runs": {}, "passed": bool(runs)}
    for name, run_verdict in scenario.verdicts.items():
        run = runs.get(name)
        if not run_verdict.checks or run is None:
            continue
        judged = [Judged(c, metric(c, run), c.holds(metric(c, run))) for c in run_verdict.checks]
        results = [j.passed for j in judged]
        passed = bool(results) and (all(results) if run_verdict.mode == "all" else any(results))
        if run.get("error"):
            passed = False
        verdict["runs"][name] = {
            "mode": run_verdict.mode,
            "passed": passed,
            "checks": [j.as_dict() for j in judged],
        }
        verdict["passed"] = verdict["passed"] and passed
    return verdict
