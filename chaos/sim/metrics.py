"""The simulated api-server's own Prometheus metrics: in flight, requests, latency, crashes, up.

Each simulation owns one `CollectorRegistry`, so several simulations (and guard) can live in one
process and tests can read exact counts. It must never register on prometheus_client's global
registry, and its labels stay bounded (replica index, request kind, verb, status code).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

# Latency buckets from 1 ms to 30 s: idle service time is a few ms, overload reaches seconds.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class SimMetrics:
    """The metric families of one simulation, labelled by replica index."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.inflight = Gauge(
            "sim_inflight_requests",
            "Requests being served.",
            ["replica", "kind"],
            registry=r,
        )
        self.requests = Counter(
            "sim_requests",
            "Requests answered.",
            ["replica", "verb", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "sim_request_duration_seconds",
            "Time from admission to the handler's answer.",
            ["replica", "verb"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.crashes = Counter("sim_crashes", "Replica crashes.", ["replica"], registry=r)
        self.up = Gauge("sim_replica_up", "1 while the replica accepts connections.", ["replica"], registry=r)
        self.list_bytes = Gauge(
            "sim_inflight_list_bytes",
            "LIST bytes charged to the memory budget.",
            ["replica"],
            registry=r,
        )

    def record(self, replica: int, verb: str, code: int, seconds: float) -> None:
        """Count one answered request and observe its duration."""
        self.requests.labels(str(replica), verb, str(code)).inc()
        self.duration.labels(str(replica), verb).observe(seconds)

    def set_inflight(self, replica: int, kind: str, value: int) -> None:
        self.inflight.labels(str(replica), kind).set(value)

    def set_list_bytes(self, replica: int, value: int) -> None:
        self.list_bytes.labels(str(replica)).set(value)

    def crashed(self, replica: int) -> None:
        self.crashes.labels(str(replica)).inc()
        self.up.labels(str(replica)).set(0)

    def set_up(self, replica: int, up: bool) -> None:
        self.up.labels(str(replica)).set(1 if up else 0)


def metrics_handler(registry: CollectorRegistry) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A `GET /metrics` handler exposing `registry` in the Prometheus text format."""

    async def handle(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        response = web.Response(body=body)
        # Set the whole header: aiohttp's content_type setter rejects the version parameter.
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return handle
