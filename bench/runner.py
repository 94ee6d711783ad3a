"""One benchmark run: start the upstream and every target, measure them in interleaved rounds (so
drift hits all alike), then memory and decision cost, and collect the figures into `Results`.
Every process it starts is stopped before it returns, whatever happens; a part that cannot run is
recorded as skipped, never raised.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench import decision, h2, memory, targets
from bench.load import CONNECTIONS, LoadResult, run_wrk, write_script
from bench.procs import Processes, Skip, cpu_seconds
from bench.report import describe_machine
from bench.results import WATCH_GOAL, Results, Throughput
from bench.targets import Env, Running, Target

SECTIONS = ("watches", "list", "decision", "h2watches")


@dataclass(frozen=True)
class Plan:
    rounds: int = 3
    duration: float = 5.0
    targets: tuple[Target, ...] = targets.TARGETS
    sections: frozenset[str] = frozenset(SECTIONS)
    calibrate: bool = True
    """Measure the Python and nginx static upstreams and use the faster one as `direct`."""
    baseline: Path | None = None
    """A checkout of an earlier guard, measured as the `guard-baseline` target."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(plan: Plan, workdir: Path) -> Results:
    results = Results(machine=describe_machine())
    procs = Processes(workdir)
    try:
        env = Env(workdir, procs, baseline=plan.baseline)
        python_upstream = targets.start_upstream(env)
        env.upstream = _choose_upstream(env, python_upstream, plan, results)
        _measure_throughput(env, plan, results)
        if {"watches", "list"} & plan.sections:
            _measure_memory(replace(env, upstream=python_upstream, tag="mem-"), plan, results)
        if "h2watches" in plan.sections:
            _measure_h2_watches(replace(env, upstream=python_upstream, tag="h2mem-"), results)
        if "decision" in plan.sections:
            say("decision cost ...")
            try:
                results.decision = decision.decision_cost(workdir)
            except Skip as e:
                results.decision = f"skipped: {e}"
    finally:
        procs.close()
    return results


def _choose_upstream(env: Env, python_upstream: Running, plan: Plan, results: Results) -> Running:
    if not plan.calibrate or not plan.targets:
        return python_upstream
    script = write_script(env.workdir)
    candidates: list[tuple[str, Running, float]] = []
    starts: list[tuple[str, Callable[[], Running]]] = [
        ("python raw asyncio + uvloop", lambda: python_upstream),
        ("nginx static, 1 worker", lambda: targets.start_nginx_static(env)),
    ]
    for name, start in starts:
        try:
            running = start()
            figure = run_wrk(running.port, 3, script)
        except Skip as e:
            results.upstream_choice.append((name, f"skipped: {e}"))
            continue
        candidates.append((name, running, figure.rps))
        results.upstream_choice.append((name, f"{figure.rps:,.0f} req/s"))
    if not candidates:
        return python_upstream
    best = max(candidates, key=lambda c: c[2])
    results.upstream_choice.append(("chosen", best[0]))
    return best[1]


def _start_all(env: Env, plan: Plan) -> dict[str, Running | str]:
    started: dict[str, Running | str] = {}
    script = write_script(env.workdir)
    for target in plan.targets:
        say(f"starting {target.name} ...")
        try:
            started[target.name] = running = target.start(env)
            _load(target, running, 1, script)  # warm-up: connections, caches, TokenReview
        except Skip as e:
            started[target.name] = str(e)
            say(f"  skipped: {e}")
    return started


def _measure_throughput(env: Env, plan: Plan, results: Results) -> None:
    started = _start_all(env, plan)
    script = write_script(env.workdir)
    rounds: dict[str, list[LoadResult]] = {name: [] for name in started}
    skipped = {name: s for name, s in started.items() if isinstance(s, str)}
    by_name = {t.name: t for t in plan.targets}
    for number in range(1, plan.rounds + 1):
        for name, running in started.items():
            if isinstance(running, str) or name in skipped:
                continue
            say(f"round {number}/{plan.rounds}: {name}")
            try:
                rounds[name].append(_timed(by_name[name], running, plan.duration, script))
            except Skip as e:
                skipped[name] = str(e)
    for target in plan.targets:
        results.throughput.append(
            Throughput(target.name, target.what, tuple(rounds[target.name]), skipped.get(target.name, ""))
        )


def _load(target: Target, running: Running, duration: float, script: Path) -> LoadResult:
    if target.load == "h2load":
        return h2.run_h2load(running.port, duration, script.parent, connections=CONNECTIONS)
    return run_wrk(running.port, duration, script, scheme=running.scheme)


def _timed(target: Target, running: Running, duration: float, script: Path) -> LoadResult:
    """One load run against `running`, with the CPU its processes spent per request."""
    before = cpu_seconds(running.pid)
    result = _load(target, running, duration, script)
    spent = cpu_seconds(running.pid) - before
    return replace(result, cpu_us=spent * 1e6 / max(1, result.requests))


def _measure_memory(env: Env, plan: Plan, results: Results) -> None:
    say("memory: starting a fresh guard against the Python upstream ...")
    try:
        guard = targets.guard()(env)
    except Skip as e:
        results.watches_skipped = str(e)
        results.lists["guard"] = str(e)
        guard = None
    if "list" in plan.sections:
        _measure_lists(env, guard, results)
    if "watches" in plan.sections and guard is not None:
        capacity = min(WATCH_GOAL, memory.watch_capacity())
        if capacity < WATCH_GOAL:
            results.notes.append(
                f"open-files hard limit allows {capacity:,} watches through a proxy (2 sockets each); "
                "the 10,000-watch figure is extrapolated linearly"
            )
        say(f"memory: idle watches 0 → 1,000 → {capacity:,} ...")
        results.watches = memory.watch_memory(guard.port, guard.pid, (0, min(1000, capacity), capacity))
        if results.watches[-1].opened < capacity:
            results.notes.append(
                f"guard accepted only {results.watches[-1].opened:,} of {capacity:,} watches; further ones "
                "got no answer within 10 s"
            )


def _measure_h2_watches(env: Env, results: Results) -> None:
    """Memory per idle watch: 1,000 as streams of one HTTP/2 connection, then 1,000 HTTP/1.1
    connections over TLS, on one fresh guard with TLS."""
    say(f"memory: {h2.H2_STREAMS:,} watches on one HTTP/2 connection, then as HTTP/1.1 connections ...")
    try:
        guard = targets.guard(tls=True)(env)
        results.h2_watches = h2.watch_memory(guard.port, guard.pid, env.workdir / "tls" / "ca.crt")
    except Skip as e:
        results.h2_watches = str(e)


def _measure_lists(env: Env, guard: Running | None, results: Results) -> None:
    vias: list[tuple[str, Running | None]] = [("direct", env.upstream), ("guard", guard)]
    for via, running in vias:
        if running is None:
            continue
        say(f"memory: 100 MB LIST via {via} ...")
        try:
            results.lists[via] = memory.large_list(running.port, running.pid)
        except Skip as e:
            results.lists[via] = str(e)
