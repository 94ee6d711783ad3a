"""Every Prometheus metric guard exports, declared in this one module on a non-global registry.

Label values are bounded: cluster, verb, code, tenant, rule, decision, reason and priority level —
never a user name, a token, a path or anything a client can choose freely. Admission figures are not
counted per request here: the admission controller keeps plain counters (`AdmissionStats`) and
`AdmissionCollector` turns them into metrics at scrape time, so the request path pays nothing for
them. Other areas add their metrics here (a small edit to `GuardMetrics`), so a reader finds every
name in one place — which is why this module is longer than the others.
"""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import accumulate
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from guard import __version__
from guard.admission.capacity import CapacityGate
from guard.admission.controller import AdmissionController
from guard.admission.stats import AdmissionStats, WaitHistogram

KNOWN_VERBS = frozenset({
    "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy", "connect",
    "head", "options", "post", "put",
})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MAX_BUCKET_SERIES = 1000
"""Most `guard_bucket_tokens` series one scrape shows (one per tenant-scoped rule)."""
LEVELS = frozenset({"degraded", "live_replicas", "active", "version", "open", "orders"})
"""Names in an `add_counters` source that are levels, not counts: exported as gauges, without `_total`."""
_HISTORY_KEPT = 8  # retired controllers (settings reloads) whose counters are still summed

AdmissionNow = Callable[[], tuple[str, object]]
"""Returns (cluster name, the current admission object); called at scrape time."""


def verb_label(verb: str) -> str:
    """Clients choose the HTTP method of non-resource requests; fold the unknown ones."""
    return verb if verb in KNOWN_VERBS else "other"


class GuardMetrics:
    """The metrics of one guard process. Build one per registry (tests build their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = RequestTally()
        """Requests answered, their bytes and latency: plain counts, exported at scrape time."""
        r.register(self.requests)
        self.in_flight = InFlightCollector()
        r.register(self.in_flight)
        self.upstream_errors = Counter("guard_upstream_errors_total",
                                       "Requests answered 502/503 as the api-server failed, by error kind.",
                                       ["cluster", "kind"], registry=r)
        self._upstream_error_children: dict[tuple[str, str], Any] = {}
        self.reloads = Counter("guard_settings_reloads_total", "SIGHUP reloads, by result.", ["result"],
                               registry=r)
        for result in ("applied", "rejected"):  # at 0 from the start, so the first change shows
            self.reloads.labels(result)
        Gauge("guard_build_info", "guard's version and the Python it runs on (always 1).",
              ["version", "python"], registry=r).labels(__version__, platform.python_version()).set(1)
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_open_fds, ... (Linux)
        self.admission = AdmissionCollector()
        r.register(self.admission)
        self.endpoints = EndpointCollector()
        r.register(self.endpoints)
        self.capacity = CapacityCollector()
        r.register(self.capacity)

    def count_upstream_error(self, cluster: str, kind: str) -> None:
        """One request answered 502/503 because the api-server failed (`kind`: the error's class).
        Children are looked up once: prometheus_client's `labels()` validates, locks and hashes on
        every call. Both labels are bounded (clusters of the settings, guard's error classes)."""
        child = self._upstream_error_children.get((cluster, kind))
        if child is None:
            child = self._upstream_error_children[cluster, kind] = self.upstream_errors.labels(cluster, kind)
        child.inc()

    def add_counters(self, source: Callable[[], dict[str, int]], prefix: str, help_text: str) -> None:
        """Export a plain counter object (e.g. the authenticator's stats) without coupling it here."""
        self.registry.register(_CountersCollector(source, prefix, help_text))

    def watch_requests(self, current: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
        """Export in-flight requests from `current()` = [(cluster, sent upstream, long-running)]."""
        self.in_flight.current = current

    def watch_endpoints(self, current: Callable[[], Iterable[EndpointFigures]]) -> None:
        """Export every api-server endpoint's circuit state and load from `current()`."""
        self.endpoints.current = current

    def watch_capacity(self, current: Callable[[], Iterable[CapacityGate]]) -> None:
        """Export the adaptive concurrency limit of every cluster that has one, from `current()`."""
        self.capacity.current = current

    def watch_admission(self, current: AdmissionNow,
                        inflight: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        """Export the admission controller that `current()` returns at each scrape (it changes on
        reload), and the admitted requests in flight per (cluster, tenant) that `inflight()` returns."""
        self.admission.current, self.admission.inflight = current, inflight


class RequestTally(Collector):
    """`guard_requests_total`, `guard_response_bytes_total` and `guard_request_duration_seconds`
    kept as plain dictionaries: each request costs a few dictionary updates instead of three
    prometheus_client children, each behind a lock (guard serves on one thread)."""

    def __init__(self) -> None:
        self.answered: Tally[tuple[str, str, str]] = Tally()
        self.sent: Tally[str] = Tally()
        self.latency: dict[tuple[str, str], list[float]] = {}
        """(cluster, verb) -> a count per bucket of LATENCY_BUCKETS (+Inf last), then the sum."""

    def count(self, cluster: str, verb: str, code: int, sent: int) -> None:
        self.answered[(cluster, verb, str(code))] += 1
        self.sent[cluster] += sent

    def observe(self, cluster: str, verb: str, seconds: float) -> None:
        counts = self.latency.get((cluster, verb))
        if counts is None:
            counts = self.latency[(cluster, verb)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        counts[-1] += seconds

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        answered = CounterMetricFamily("guard_requests", "Requests answered, by cluster, verb and HTTP code.",
                                       labels=["cluster", "verb", "code"])
        for labels, n in sorted(self.answered.items()):
            answered.add_metric(list(labels), n)
        yield answered
        sent = CounterMetricFamily("guard_response_bytes", "Response body bytes sent to clients.",
                                   labels=["cluster"])
        for cluster, n in sorted(self.sent.items()):
            sent.add_metric([cluster], n)
        yield sent
        latency = HistogramMetricFamily(
            "guard_request_duration_seconds",
            "Time from request to response headers (long-running requests excluded).",
            labels=["cluster", "verb"])
        bounds = [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]
        for pair, counts in sorted(self.latency.items()):
            cumulative = list(accumulate(counts[:-1]))
            latency.add_metric(list(pair), list(zip(bounds, cumulative, strict=True)), sum_value=counts[-1])
        yield latency


class _CountersCollector(Collector):
    def __init__(self, source: Callable[[], dict[str, int]], prefix: str, help_text: str) -> None:
        self._source, self._prefix, self._help = source, prefix, help_text

    def collect(self) -> Iterator[Metric]:
        for name, value in self._source().items():
            kind = GaugeMetricFamily if name in LEVELS else CounterMetricFamily
            family = kind(f"{self._prefix}_{name}", f"{self._help} ({name})")
            family.add_metric([], value)
            yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())


class InFlightCollector(Collector):
    """`guard_requests_in_flight{cluster,kind}` read at scrape time from the upstream endpoints'
    own counts, so no request pays for a gauge update."""

    def __init__(self) -> None:
        self.current: Callable[[], Iterable[tuple[str, int, int]]] = list

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("guard_requests_in_flight", "Requests sent to the api-server and not "
                                   "yet finished, by kind (ordinary, long-running: watches and tunnels).",
                                   labels=["cluster", "kind"])
        for cluster, upstream, long_running in self.current():
            family.add_metric([cluster, "ordinary"], max(0, upstream - long_running))
            family.add_metric([cluster, "long-running"], long_running)
        yield family


class EndpointFigures(NamedTuple):
    """One api-server endpoint as /metrics shows it (`endpoint` is its URL from the settings)."""

    cluster: str
    endpoint: str
    up: bool
    weight: float
    in_flight: int
    failures: int
    opens: int
    fleet_replicas: int = 0
    """Live replicas sharing a view of the endpoint through Redis, this one included; 0: none."""
    fleet_open: int = 0
    """Of those, how many see its circuit open."""
    fleet_in_flight: int = 0
    """Requests the other replicas have in flight there."""
    fleet_opens: int = 0
    """Times the fleet's views opened the circuit here."""


class EndpointCollector(Collector):
    """`guard_upstream_endpoint_*{cluster,endpoint}`: circuit state, slow-start weight, load and
    failures of every endpoint, read at scrape time from the breakers."""

    def __init__(self) -> None:
        self.current: Callable[[], Iterable[EndpointFigures]] = list

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        labels = ["cluster", "endpoint"]
        up = GaugeMetricFamily("guard_upstream_endpoint_up", "1 while the endpoint's circuit is closed "
                               "(it takes requests), 0 while open or half-open.", labels=labels)
        weight = GaugeMetricFamily("guard_upstream_endpoint_weight", "Share of new requests the endpoint "
                                   "is due: below 1 during slow start.", labels=labels)
        in_flight = GaugeMetricFamily("guard_upstream_endpoint_in_flight", "Requests sent to the endpoint "
                                      "and not yet finished.", labels=labels)
        failures = CounterMetricFamily("guard_upstream_endpoint_failures", "Connection failures, timeouts "
                                       "and failed health checks.", labels=labels)
        opens = CounterMetricFamily("guard_upstream_endpoint_opens", "Times the endpoint's circuit opened.",
                                    labels=labels)
        fleet = _FleetFamilies(labels)
        for e in self.current():
            key = [e.cluster, e.endpoint]
            up.add_metric(key, 1 if e.up else 0)
            weight.add_metric(key, e.weight)
            in_flight.add_metric(key, e.in_flight)
            failures.add_metric(key, e.failures)
            opens.add_metric(key, e.opens)
            fleet.add(key, e)
        yield from (up, weight, in_flight, failures, opens)
        yield from fleet.families()


class _FleetFamilies:
    """`guard_upstream_endpoint_fleet_*`: the endpoint as the replicas sharing Redis see it; only
    for endpoints with a fleet view (none without Redis or while it is unreachable)."""

    def __init__(self, labels: list[str]) -> None:
        self.replicas = GaugeMetricFamily("guard_upstream_endpoint_fleet_replicas", "Live replicas sharing "
                                          "a view of the endpoint through Redis, this one included.",
                                          labels=labels)
        self.open = GaugeMetricFamily("guard_upstream_endpoint_fleet_open", "Replicas that see the "
                                      "endpoint's circuit open or half-open, this one included.",
                                      labels=labels)
        self.in_flight = GaugeMetricFamily("guard_upstream_endpoint_fleet_in_flight", "Requests the other "
                                           "replicas have in flight to the endpoint.", labels=labels)
        self.opens = CounterMetricFamily("guard_upstream_endpoint_fleet_opens", "Times the fleet's views "
                                         "opened the endpoint's circuit on this replica.", labels=labels)

    def add(self, key: list[str], e: EndpointFigures) -> None:
        if e.fleet_replicas:
            self.replicas.add_metric(key, e.fleet_replicas)
            self.open.add_metric(key, e.fleet_open)
            self.in_flight.add_metric(key, e.fleet_in_flight)
        if e.fleet_replicas or e.fleet_opens:
            self.opens.add_metric(key, e.fleet_opens)

    def families(self) -> Iterator[Metric]:
        yield from (f for f in (self.replicas, self.open, self.in_flight, self.opens) if f.samples)


class CapacityCollector(Collector):
    """`guard_upstream_concurrency_*{cluster}`: each cluster's adaptive limit, the ordinary requests
    holding and waiting for its slots, and what became of them, read at scrape time from the gates."""

    def __init__(self) -> None:
        self.current: Callable[[], Iterable[CapacityGate]] = list

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        name = "guard_upstream_concurrency"
        limit = GaugeMetricFamily(f"{name}_limit", "The adaptive limit of ordinary requests to the cluster "
                                  "from this process.", labels=["cluster"])
        in_flight = GaugeMetricFamily(f"{name}_in_flight", "Ordinary requests holding a slot of the limit.",
                                      labels=["cluster"])
        waiting = GaugeMetricFamily(f"{name}_waiting", "Ordinary requests held, waiting for a slot.",
                                    labels=["cluster"])
        signals = CounterMetricFamily(f"{name}_overload_signals", "Exchanges that said the cluster is "
                                      "overloaded: its 429, 503 or 504, a failed connection, a timeout.",
                                      labels=["cluster"])
        decisions = CounterMetricFamily(f"{name}_decisions", "Ordinary requests by what the limit did: "
                                        "admitted at once, held (admitted after waiting), overload "
                                        "(answered 429).", labels=["cluster", "tenant", "decision"])
        for gate in self.current():
            key = [gate.cluster]
            limit.add_metric(key, gate.limit)
            in_flight.add_metric(key, gate.in_flight)
            waiting.add_metric(key, gate.waiting)
            signals.add_metric(key, gate.limiter.overload_signals)
            for (tenant, decision), n in sorted(gate.decisions.items()):
                decisions.add_metric([gate.cluster, tenant, decision], n)
        yield from (limit, in_flight, waiting, signals, decisions)


def _nothing() -> tuple[str, object]:
    return "", None


class AdmissionCollector(Collector):
    """The admission controller's counters, seats and bucket levels, read at scrape time.

    A settings reload builds a new controller whose counters start at zero; the retired ones are
    still summed, so the exported counters never go backwards within one process."""

    def __init__(self) -> None:
        self.current: AdmissionNow = _nothing
        self.inflight: Callable[[], Mapping[tuple[str, str], int]] = dict
        self._history: list[tuple[str, AdmissionStats]] = []

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families appear only once a controller exists; nothing to pre-declare

    def collect(self) -> Iterator[Metric]:
        cluster, admission = self.current()
        controller = admission if isinstance(admission, AdmissionController) else None
        if controller is not None:
            self._remember(cluster, controller.stats)
        stats = self._history
        yield _decisions(stats)
        yield _rejections(stats)
        yield _reloads(stats)
        yield _waits(HistogramMetricFamily(
            "guard_admission_queue_wait_seconds", "Time queued requests waited for a seat, by priority "
            "level.", labels=["priority_level"]), stats, lambda s: s.queue_waits)
        yield _waits(HistogramMetricFamily(
            "guard_admission_quota_wait_seconds", "Time requests over quota were held for a token before "
            "admission (up to their rule's maxWait), by tenant.", labels=["tenant"]), stats,
            lambda s: s.quota_waits)
        yield _inflight(self.inflight())
        if controller is not None:
            yield _seats(controller)
            yield _bucket_tokens(controller)

    def _remember(self, cluster: str, stats: AdmissionStats) -> None:
        if any(s is stats for _, s in self._history):
            return
        if len(self._history) >= _HISTORY_KEPT:
            self._fold()
        self._history.append((cluster, stats))

    def _fold(self) -> None:
        """Merge the two oldest entries into one, so history stays bounded and totals stay whole."""
        (cluster, a), (_, b) = self._history[0], self._history[1]
        merged = AdmissionStats(decisions=a.decisions + b.decisions, reasons=a.reasons + b.reasons,
                                reloads=a.reloads + b.reloads,
                                reload_failures=a.reload_failures + b.reload_failures)
        for level in {*a.queue_waits, *b.queue_waits}:
            merged.queue_waits[level] = _merge_waits(a.queue_waits.get(level), b.queue_waits.get(level))
        for tenant in {*a.quota_waits, *b.quota_waits}:
            merged.quota_waits[tenant] = _merge_waits(a.quota_waits.get(tenant), b.quota_waits.get(tenant))
        self._history[:2] = [(cluster, merged)]


def _merge_waits(a: WaitHistogram | None, b: WaitHistogram | None) -> WaitHistogram:
    out = WaitHistogram()
    for h in (a, b):
        if h is not None:
            out.counts = [x + y for x, y in zip(out.counts, h.counts, strict=True)]
            out.sum, out.count = out.sum + h.sum, out.count + h.count
    return out


def _decisions(history: Iterable[tuple[str, AdmissionStats]]) -> Metric:
    family = CounterMetricFamily("guard_admission_decisions", "Admission verdicts by tenant, rule and "
                                 "decision (admitted, exempt, queued, shadow, rejected).",
                                 labels=["cluster", "tenant", "rule", "decision"])
    totals: Tally[tuple[str, str, str, str]] = Tally()
    for _, stats in history:
        totals.update(stats.decisions)  # (cluster, tenant, rule, decision): the routed cluster
    for labels, n in sorted(totals.items()):
        family.add_metric(labels, n)
    return family


def _rejections(history: Iterable[tuple[str, AdmissionStats]]) -> Metric:
    family = CounterMetricFamily("guard_admission_rejections", "Rejections (and shadow would-be "
                                 "rejections) by tenant and reason: quota, inflight, watches, queue-full, "
                                 "queue-wait.", labels=["cluster", "tenant", "reason"])
    totals: Tally[tuple[str, str, str]] = Tally()
    for _, stats in history:
        totals.update(stats.reasons)
    for labels, n in sorted(totals.items()):
        family.add_metric(labels, n)
    return family


def _reloads(history: Iterable[tuple[str, AdmissionStats]]) -> Metric:
    family = CounterMetricFamily("guard_policy_reloads", "Policy hot reloads by result (a rejected "
                                 "reload keeps the last good policy set).", labels=["result"])
    done = sum(s.reloads for _, s in history)
    failed = sum(s.reload_failures for _, s in history)
    family.add_metric(["applied"], done - failed)
    family.add_metric(["rejected"], failed)
    return family


def _waits(family: HistogramMetricFamily, history: Iterable[tuple[str, AdmissionStats]],
           histograms: Callable[[AdmissionStats], dict[str, WaitHistogram]]) -> Metric:
    merged: dict[str, WaitHistogram] = {}
    for _, stats in history:
        for level, h in histograms(stats).items():
            merged[level] = _merge_waits(merged.get(level), h)
    for level, h in sorted(merged.items()):
        cumulative, buckets = 0, []
        for bound, n in zip(h.bounds, h.counts, strict=False):
            cumulative += n
            buckets.append((_le(bound), float(cumulative)))
        buckets.append(("+Inf", float(h.count)))
        family.add_metric([level], buckets, h.sum)
    return family


def _le(bound: float) -> str:
    return repr(float(bound))


def _inflight(per_tenant: Mapping[tuple[str, str], int]) -> Metric:
    family = GaugeMetricFamily("guard_admission_inflight", "Admitted requests being served, by cluster and "
                               "tenant.", labels=["cluster", "tenant"])
    for (cluster, tenant), n in sorted(per_tenant.items()):
        family.add_metric([cluster, tenant], n)
    return family


def _seats(controller: AdmissionController) -> Metric:
    family = GaugeMetricFamily("guard_admission_seats_in_use", "Concurrency seats held, by priority level.",
                               labels=["priority_level"])
    for level, n in sorted(controller.seats_in_use().items()):
        family.add_metric([level], n)
    return family


def _bucket_tokens(controller: AdmissionController) -> Metric:
    """Tokens left in each tenant-scoped bucket (per-user and per-namespace buckets are unbounded in
    number, so they are left to /debug/guard/buckets)."""
    family = GaugeMetricFamily("guard_bucket_tokens", "Tokens left in each tenant-scoped bucket.",
                               labels=["tenant", "rule"])
    policies = controller.policies
    rules = [r for t in policies.tenants for r in t.rules] + [policies.catch_all]
    shown = 0
    for rule in rules:
        if rule.limit is None or rule.quota is None or rule.quota.scope != "tenant":
            continue
        if shown >= MAX_BUCKET_SERIES:
            break
        level = controller.store.peek(rule.key_base, rule.limit).remaining
        family.add_metric([rule.tenant, rule.name], level)
        shown += 1
    return family
