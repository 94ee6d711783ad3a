"""Every Prometheus metric guard exports, declared in this one module on a non-global registry.

Label values are bounded: cluster, verb, code class and decision — never a user name, a token, a
path or anything a client can choose freely. Other areas add their metrics here (a small edit to
`GuardMetrics`), so a reader finds every name in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

KNOWN_VERBS = frozenset({
    "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy", "connect",
    "head", "options", "post", "put",
})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def verb_label(verb: str) -> str:
    """Clients choose the HTTP method of non-resource requests; fold the unknown ones."""
    return verb if verb in KNOWN_VERBS else "other"


class GuardMetrics:
    """The metrics of one guard process. Build one per registry (tests build their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("guard_requests_total", "Requests answered, by cluster, verb and HTTP code.",
                                ["cluster", "verb", "code"], registry=r)
        self.latency = Histogram("guard_request_duration_seconds",
                                 "Time from request to response headers (long-running requests excluded).",
                                 ["cluster", "verb"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("guard_requests_in_flight", "Requests being served, by cluster and kind.",
                               ["cluster", "kind"], registry=r)
        self.upstream_errors = Counter("guard_upstream_errors_total",
                                       "Failures talking to an api-server endpoint, by kind.",
                                       ["cluster", "endpoint", "kind"], registry=r)
        self.admission = Counter("guard_admission_decisions_total", "Admission outcomes.",
                                 ["cluster", "outcome"], registry=r)
        self.reloads = Counter("guard_settings_reloads_total", "SIGHUP reloads, by result.", ["result"],
                               registry=r)
        self.bytes_sent = Counter("guard_response_bytes_total", "Response body bytes sent to clients.",
                                  ["cluster"], registry=r)

    def add_counters(self, source: Callable[[], dict[str, int]], prefix: str, help_text: str) -> None:
        """Export a plain counter object (e.g. the authenticator's stats) without coupling it here."""
        self.registry.register(_CountersCollector(source, prefix, help_text))


class _CountersCollector(Collector):
    def __init__(self, source: Callable[[], dict[str, int]], prefix: str, help_text: str) -> None:
        self._source, self._prefix, self._help = source, prefix, help_text

    def collect(self) -> Iterator[Metric]:
        for name, value in self._source().items():
            family = CounterMetricFamily(f"{self._prefix}_{name}", f"{self._help} ({name})")
            family.add_metric([], value)
            yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())
