"""How guard.process.wiring builds the adaptive limit: one gate per cluster with `adaptive:` on, kept (with
what it learnt) across settings reloads, dropped when turned off, its bounds split between
`--workers N` processes like the quotas."""

from __future__ import annotations

from typing import Any

from guard.admission.adaptive import AdaptiveSettings
from guard.admission.embedded import EmbeddedStore
from guard.process.wiring import ProcessState, build_runtime, close_runtime, per_worker
from guard.proxy.runtime import Runtime, Serving, clusters_of
from guard.settings import Settings, parse


def settings(a: dict[str, Any] | None, b: dict[str, Any] | None = None) -> Settings:
    clusters: list[dict[str, Any]] = [{"name": "a", "server": "http://127.0.0.1:1", "token": "t"},
                                      {"name": "b", "server": "http://127.0.0.1:2", "token": "t"}]
    for cluster, adaptive in zip(clusters, (a, b), strict=True):
        if adaptive is not None:
            cluster["adaptive"] = adaptive
    return parse({"listen": "127.0.0.1:0", "clusters": clusters}, "guard.yaml")


def gates(runtime: Runtime) -> dict[str, Any]:
    return {rt.upstream.name: rt.capacity for rt in clusters_of(runtime)}


async def test_each_cluster_gets_its_gate_and_a_reload_keeps_what_it_learnt() -> None:
    first = settings({"max": 300})
    shared = ProcessState(first, EmbeddedStore())
    running = await build_runtime(first, shared=shared)
    shared.serving = Serving(running)
    gate = gates(running)["a"]
    assert gate is not None and gates(running)["b"] is None
    for _ in range(20):  # past its probe
        gate.limiter.observe(0.01, "ok", "get /pods/ namespaced")
    learnt = gate.limit
    reloaded = await build_runtime(settings({"max": 50, "min": 2}, {}), shared=shared)
    assert gates(reloaded)["a"] is gate and gate.settings.max == 50 and gate.limit == min(learnt, 50)
    assert gates(reloaded)["b"] is not None
    shared.serving = Serving(reloaded)
    off = await build_runtime(settings({"enabled": False}), shared=shared)
    assert gates(off) == {"a": None, "b": None}
    for rt in (running, reloaded, off):
        await close_runtime(rt)


async def test_workers_split_the_bounds() -> None:
    """--workers 4: min 5 -> 2, initial 20 -> 5, max 1000 -> 250 per process; one process keeps them."""
    runtime = await build_runtime(settings({}), workers=4)
    gate = gates(runtime)["a"]
    assert (gate.settings.min, gate.settings.initial, gate.settings.max) == (2, 5, 250)
    assert per_worker(AdaptiveSettings(enabled=True), 1) == AdaptiveSettings(enabled=True)
    await close_runtime(runtime)
