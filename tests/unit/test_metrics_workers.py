"""guard.telemetry.merge and the admin app's worker views: one exposition with a `worker` label on every
sample and each family once; a single process unchanged; a sibling on a unix socket reached by index."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from guard.settings import Settings
from guard.telemetry import merge as metricsmerge
from guard.telemetry.admin import AdminPages, build_admin_app, serve_siblings
from guard.telemetry.metrics import GuardMetrics
from guard.telemetry.siblings import Siblings


def exposition(requests: int, *, gauge: float = 1.0) -> str:
    """A worker's /metrics: a labelled counter, a histogram, a gauge whose help needs escaping."""
    registry = CollectorRegistry()
    counter = Counter("guard_requests_total", "Requests.", ["cluster", "code"], registry=registry)
    counter.labels("dev", "200").inc(requests)
    counter.labels("dev", "429").inc(1)
    Histogram("guard_lat_seconds", "Latency.", buckets=(0.1, 1.0), registry=registry).observe(0.5)
    Gauge("guard_level", 'A "quoted" \\ help\nline.', registry=registry).set(gauge)
    return generate_latest(registry).decode()


def merged(*texts: str) -> str:
    families = metricsmerge.merge({i: metricsmerge.parse(t) for i, t in enumerate(texts)})
    return metricsmerge.render(families).decode()


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def test_every_sample_gets_its_worker_and_every_family_appears_once() -> None:
    """Three workers: HELP and TYPE once per family, each worker's samples under it, values kept."""
    text = merged(exposition(3), exposition(5), exposition(7, gauge=2.0))
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert len(comments) == len(set(comments)) == 2 * len(list(text_string_to_metric_families(text)))
    got = samples(text)
    assert all(labels["worker"] in {"0", "1", "2"} for _, labels, _ in got)
    ok = {labels["worker"]: value for name, labels, value in got
          if name == "guard_requests_total" and labels["code"] == "200"}
    assert ok == {"0": 3.0, "1": 5.0, "2": 7.0}
    assert [v for n, labels, v in got if n == "guard_lat_seconds_count"] == [1.0, 1.0, 1.0]
    levels = {labels["worker"]: v for n, labels, v in got if n == "guard_level"}
    assert levels == {"0": 1.0, "1": 1.0, "2": 2.0}
    assert 'A "quoted" \\\\ help\\nline.' in text


def test_a_worker_sample_keeps_every_label_it_had() -> None:
    """Re-rendering adds `worker` and changes nothing else, in the order the workers are numbered."""
    text = merged(exposition(1), exposition(2))
    own = [(n, labels) for n, labels, _ in samples(exposition(1))]
    by_worker = [[(n, {k: v for k, v in labels.items() if k != "worker"}) for n, labels, _ in samples(text)
                  if labels["worker"] == w] for w in ("0", "1")]
    assert by_worker == [own, own]


@pytest.mark.parametrize("text", ["guard_requests_total{code=200} 1\n", "guard_x{a=\"1\"} one\n",
                                  "<html>502 Bad Gateway</html>\n"])
def test_text_that_is_not_an_exposition_is_a_value_error(text: str) -> None:
    """A sibling answering garbage is the caller's failed scrape, never another exception."""
    with pytest.raises(ValueError):
        metricsmerge.parse(text)


def test_the_gathering_families_say_who_answered_and_count_failures() -> None:
    """guard_workers_up for each worker, scrape errors for each sibling, counted from 0."""
    text = metricsmerge.render(metricsmerge.gathering(3, [0, 2], {1: 4, 2: 0})).decode()
    assert samples(text) == [
        ("guard_workers_up", {"worker": "0"}, 1.0), ("guard_workers_up", {"worker": "1"}, 0.0),
        ("guard_workers_up", {"worker": "2"}, 1.0),
        ("guard_workers_scrape_errors_total", {"worker": "1"}, 4.0),
        ("guard_workers_scrape_errors_total", {"worker": "2"}, 0.0)]


def admin_app(requests: int) -> web.Application:
    metrics = GuardMetrics()
    metrics.reloads.labels("applied").inc(requests)  # a figure of this worker's own
    pages = AdminPages()
    pages.add("counts", lambda: {"requests": requests})
    return build_admin_app(metrics, pages, _no_settings, _ready)


def _no_settings() -> Settings:
    raise AssertionError("these tests never ask for /debug/guard/config")


async def _ready() -> bool:
    return True


@pytest.fixture
async def sibling(tmp_path: Path) -> AsyncIterator[str]:
    """Worker 1's admin app on a unix socket, as `guard serve --workers 2` runs it."""
    runner = web.AppRunner(admin_app(5))
    await runner.setup()
    path = str(tmp_path / "admin-1.sock")
    await web.UnixSite(runner, path).start()
    yield path
    await runner.cleanup()


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as r:
        return r.status, await r.text()


async def test_a_single_process_answers_as_before() -> None:
    """No siblings: no worker label, no guard_workers_* family; ?worker=0 is itself, ?worker=1 a 404."""
    runner, url = await serve(admin_app(3))
    try:
        status, text = await get(url + "/metrics")
        assert status == 200
        assert all("worker" not in labels for _, labels, _ in samples(text))
        assert not [n for n, _, _ in samples(text) if n.startswith("guard_workers_")]
        assert (await get(url + "/debug/guard/counts?worker=0")) == (200, '{\n  "requests": 3\n}')
        assert (await get(url + "/debug/guard/counts?worker=1"))[0] == 404
    finally:
        await runner.cleanup()


async def test_worker_zero_answers_for_a_sibling_on_a_unix_socket(sibling: str) -> None:
    """Worker 0's /metrics holds both workers' figures; ?worker=1 relays the sibling's page."""
    app = admin_app(3)
    serve_siblings(app, Siblings(0, {1: sibling}))
    runner, url = await serve(app)
    try:
        status, text = await get(url + "/metrics")
        counts = {labels["worker"]: v for n, labels, v in samples(text)
                  if n == "guard_settings_reloads_total" and labels["result"] == "applied"}
        assert (status, counts) == (200, {"0": 3.0, "1": 5.0})
        assert (await get(url + "/debug/guard/counts?worker=1")) == (200, '{\n  "requests": 5\n}')
        assert (await get(url + "/debug/guard/counts")) == (200, '{\n  "requests": 3\n}')
    finally:
        await runner.cleanup()


async def test_a_sibling_whose_socket_is_gone_is_counted_not_a_500(tmp_path: Path) -> None:
    """Nothing listens on worker 1's socket: 200 with worker 0 alone, the error counted on each scrape."""
    app = admin_app(3)
    serve_siblings(app, Siblings(0, {1: str(tmp_path / "admin-1.sock")}))
    runner, url = await serve(app)
    try:
        for scrape in (1, 2):
            status, text = await get(url + "/metrics")
            got = {(n, labels["worker"]): v for n, labels, v in samples(text)
                   if n.startswith("guard_workers")}
            assert status == 200
            assert got == {("guard_workers_up", "0"): 1.0, ("guard_workers_up", "1"): 0.0,
                           ("guard_workers_scrape_errors_total", "1"): float(scrape)}
        assert (await get(url + "/debug/guard/counts?worker=1"))[0] == 502
    finally:
        await runner.cleanup()
