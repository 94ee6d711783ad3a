"""One Prometheus exposition for `guard serve --workers N`: every worker's samples under a `worker` label.

Worker 0 parses its own /metrics text and its siblings', adds `worker="i"` to every sample and renders
each metric family once (HELP and TYPE once, the samples of every worker under it), followed by two
families of its own about the gathering: `guard_workers_up` (1 when worker i's samples are in this
answer) and `guard_workers_scrape_errors_total` (scrapes of worker i that failed since start). It
does no I/O and must never raise on text a sibling sent: text it cannot parse is the caller's failed
scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

WORKER_LABEL = "worker"


def parse(text: str) -> list[Metric]:
    """The metric families of one exposition; ValueError when the text is not Prometheus text."""
    return list(text_string_to_metric_families(text))  # the parser is lazy: list() meets every line


def merge(by_worker: Mapping[int, Iterable[Metric]]) -> list[Metric]:
    """Families by name in order of first appearance, each holding every worker's samples labelled."""
    merged: dict[str, Metric] = {}
    for index in sorted(by_worker):
        worker = str(index)
        for family in by_worker[index]:
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation, family.type,
                                                    family.unit)
            into.samples.extend(s._replace(labels={**s.labels, WORKER_LABEL: worker})
                                for s in family.samples)
    return list(merged.values())


def gathering(count: int, answered: Iterable[int], errors: Mapping[int, int]) -> list[Metric]:
    """`guard_workers_up` for each of `count` workers; `guard_workers_scrape_errors_total` for each
    worker in `errors` (the siblings, counted from 0 so the series exist before the first failure)."""
    present = set(answered)
    up = GaugeMetricFamily("guard_workers_up", "1 when this worker's samples are in this answer, else 0.",
                           labels=[WORKER_LABEL])
    failed = CounterMetricFamily("guard_workers_scrape_errors_total",
                                 "Scrapes of this worker's /metrics that failed (no answer in time, "
                                 "or not Prometheus text); its samples were left out.", labels=[WORKER_LABEL])
    for index in range(count):
        up.add_metric([str(index)], 1.0 if index in present else 0.0)
    for index in sorted(errors):
        failed.add_metric([str(index)], float(errors[index]))
    return [up, failed]


def render(families: list[Metric]) -> bytes:
    """The families as Prometheus text, exactly as prometheus_client writes a registry."""
    return generate_latest(_Fixed(families))


class _Fixed(Collector):
    """A collector that yields the families it was given."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)
