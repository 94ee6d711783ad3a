"""The in-process cost of one admission decision on the embedded store, in microseconds (p50/p99),
measured by calling guard's admission controller directly with the bench tenant's policies.
The figure includes one coroutine call per decision, as on guard's request path.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from bench.guardsetup import write_policies
from bench.results import DecisionCost
from guard.admission.config import AdmissionSettings
from guard.admission.controller import AdmissionController
from guard.admission.embedded import EmbeddedStore
from guard.kube.identity import Identity
from guard.kube.requestinfo import RequestInfo


def _identity_and_info() -> tuple[Identity, RequestInfo]:
    identity = Identity(user="bench-user", groups=("bench", "system:authenticated"))
    info = RequestInfo(
        is_resource_request=True, verb="get", path="/api/v1/namespaces/default/pods/bench-pod",
        api_prefix="api", api_version="v1", namespace="default", resource="pods", name="bench-pod",
    )  # fmt: skip
    return identity, info


def _build_controller(policy_dir: Path) -> AdmissionController:
    """The controller as guard's wiring builds it: example policies + bench tenant, embedded store."""
    return AdmissionController.from_paths([policy_dir], AdmissionSettings(), EmbeddedStore())


async def _measure(admission: AdmissionController, count: int) -> DecisionCost:
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
