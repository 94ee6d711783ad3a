"""The in-process cost of one admission decision on the embedded store, in microseconds (p50/p99),
measured by calling guard's admission controller directly with the bench tenant's policies.
It skips (never fails) while `guard.admission.controller` is not built or its entry point differs.
The figure includes one coroutine call per decision, as on guard's request path.
"""

from __future__ import annotations

import asyncio
import importlib
import statistics
import time
from pathlib import Path
from typing import Any

from bench.guardsetup import write_policies
from bench.procs import Skip
from bench.results import DecisionCost


def _identity_and_info() -> tuple[Any, Any]:
    from guard.kube.identity import Identity
    from guard.kube.requestinfo import RequestInfo

    identity = Identity(user="bench-user", groups=("bench", "system:authenticated"))
    info = RequestInfo(
        is_resource_request=True, verb="get", path="/api/v1/namespaces/default/pods/bench-pod",
        api_prefix="api", api_version="v1", namespace="default", resource="pods", name="bench-pod",
    )  # fmt: skip
    return identity, info


def _build_controller(policy_dir: Path) -> Any:
    """The controller as guard's app builds it: example policies + bench tenant, embedded store."""
    try:
        controller = importlib.import_module("guard.admission.controller")
        buckets = importlib.import_module("guard.admission.embedded")
        config = importlib.import_module("guard.admission.config")
    except ModuleNotFoundError as e:
        raise Skip(f"{e.name} is not built yet") from e
    try:
        return controller.AdmissionController.from_paths(
            [policy_dir], config.AdmissionSettings(), buckets.EmbeddedStore()
        )
    except (AttributeError, TypeError) as e:
        raise Skip(f"guard's admission API changed: {e}") from e


async def _measure(admission: Any, count: int) -> DecisionCost:
    identity, info = _identity_and_info()
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        ticket = await admission.admit(identity, info, "bench")
        samples.append(time.perf_counter_ns() - start)
        ticket.release()
    samples.sort()
    return DecisionCost(
        p50_us=statistics.median(samples) / 1000,
        p99_us=samples[int(len(samples) * 0.99)] / 1000,
        decisions=count,
    )


async def _run(workdir: Path, count: int) -> DecisionCost:
    admission = _build_controller(write_policies(workdir / "decision-policies"))
    await _measure(admission, min(count, 2000))  # warm caches and interned keys first
    return await _measure(admission, count)


def decision_cost(workdir: Path, count: int = 50_000) -> DecisionCost:
    return asyncio.run(_run(workdir, count))
