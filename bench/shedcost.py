"""What the emergency brake costs: the request path's check (`Shedding.check` with the admission
controller's tenant look-up, as `Proxy._serve` calls it) with no order, orders elsewhere, orders here
that do not match, and one that refuses; and a replica's verification of one order record.

    .venv/bin/python -m bench.shedcost      # prints a table (microseconds per call, p50 and p99)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from guard.admission.config import AdmissionSettings
from guard.admission.controller import AdmissionController
from guard.admission.embedded import EmbeddedStore
from guard.admission.shedding import Shedding, ShedOrder
from guard.federation import shedding as fed
from guard.kube.identity import Identity
from guard.kube.requestinfo import classify
from guard.policy.model import Rule, Subject, TenantPolicy

COUNT = 50_000
IDENTITY = Identity("alice", ("team-a", "system:authenticated"))
INFO = classify("GET", "/api/v1/namespaces/team-a/pods/p", {})


def _controller() -> AdmissionController:
    policies = [TenantPolicy(name=f"team-{i}", subjects=(Subject("Group", f"team-{i}"),),
                             rules=(Rule("all"),)) for i in ("a", "b", "c")]
    return AdmissionController.from_policies(policies, AdmissionSettings(), EmbeddedStore())


def _order(i: int, cluster: str = "prod", **fields: object) -> ShedOrder:
    now = time.time()
    base = {"id": f"o{i}", "clusters": (cluster,), "reason": "bench", "issued": now, "expires": now + 3600}
    return ShedOrder(**{**base, **fields})  # type: ignore[arg-type]


def _time(call: Callable[[], object]) -> tuple[float, float]:
    samples = []
    for _ in range(COUNT):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(COUNT * 0.99)] / 1000


def main() -> None:
    admission = _controller()
    cases = {
        "no order in force": [],
        "1 order, another cluster": [_order(0, "other", everything=True)],
        "10 orders here, none matching": [_order(i, users=(f"u{i}",)) for i in range(10)],
        "1 order here, refusing (429)": [_order(0, tenants=("team-a",))],
    }
    print(f"{'case':34} {'p50 us':>8} {'p99 us':>8}")
    for name, orders in cases.items():
        shedding = Shedding()
        shedding.replace(orders)

        def check(s: Shedding = shedding) -> None:
            s.refusal(IDENTITY, INFO, "prod", admission)
        p50, p99 = _time(check)
        print(f"{name:34} {p50:8.2f} {p99:8.2f}")
    key = Ed25519PrivateKey.generate()
    order = _order(0, tenants=("team-a",))
    payload, signature = order.payload(), fed.sign(order, key)
    public = key.public_key()
    p50, p99 = _time(lambda: fed.verify(payload, signature, public))
    print(f"{'verify one order record (replica)':34} {p50:8.2f} {p99:8.2f}")


if __name__ == "__main__":
    main()
