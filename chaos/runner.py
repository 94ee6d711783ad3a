"""`python -m chaos run SCENARIO|all [--report DIR] [--short]`: run each scenario twice — clients
straight at the simulated api-servers, then through guard —, record what every client class and
the control plane went through, judge the verdict, write the report and print the verdict table.

Each run has an unflooded baseline (only the well-behaved classes) followed by the flood, with the
scenario's faults fired at their offsets. Every process and proxy a run starts is stopped when it
ends, whatever happened. The exit status is non-zero when any verdict check is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chaos import bed as testbed
from chaos import observe, report, scenario, verdict, workload
from chaos.processes import Processes
from chaos.scenario import FaultSpec, Scenario

# Called once a second with (mode, phase, that phase's recorder, the observer) for live output.
Progress = Callable[[str, str, workload.Recorder, observe.Observer], None]


async def fire(fault: FaultSpec, bed: testbed.Bed, procs: Processes) -> str:
    """Apply one fault; returns a line for the run's event log."""
    if fault.target in ("redis-proxy", "upstream-proxy"):
        return await _proxy_fault(fault, bed.proxies.get(fault.target.split("-")[0]))
    proc = {"sim": bed.sim, "redis": bed.redis}.get(fault.target)
    if fault.target == "guard":
        proc = bed.guards[fault.index] if fault.index < len(bed.guards) else None
    if proc is None:
        return f"{fault.action} {fault.target}: not running in this run, skipped"
    match fault.action:
        case "kill":
            proc.signal(signal.SIGKILL)
        case "stop":
            proc.signal(signal.SIGSTOP)
        case "continue":
            proc.signal(signal.SIGCONT)
        case "restart":
            fresh = await procs.respawn(proc)
            if fault.target == "guard":
                bed.guards[fault.index] = fresh
            elif fault.target == "redis":
                bed.redis = fresh
    return f"{fault.action} {fault.target}{fault.index if fault.target == 'guard' else ''}"


async def _proxy_fault(fault: FaultSpec, proxy: Any) -> str:
    if proxy is None:
        return f"{fault.action} {fault.target}: no proxy in this run, skipped"
    if fault.action == "heal":
        await proxy.restore()
    for key, value in fault.settings.items():
        if key == "reset" and value:
            proxy.reset()
        elif key == "refuse" and value:
            await proxy.refuse()
        else:
            setattr(proxy, key, value)
    return f"{fault.action} {fault.target} {dict(fault.settings)}"


async def run_faults(s: Scenario, bed: testbed.Bed, procs: Processes, rec: workload.Recorder) -> list[str]:
    events = []
    for fault in sorted(s.faults, key=lambda f: f.at_s):
        await asyncio.sleep(max(0.0, fault.at_s - rec.now()))
        events.append(f"t={rec.now():.1f}s {await fire(fault, bed, procs)}")
    return events


async def run_once(s: Scenario, mode: str, workdir: Path, progress: Progress | None = None) -> dict[str, Any]:
    """One run (mode direct or guard): start the bed, baseline, flood with faults, collect figures."""
    result: dict[str, Any] = {"mode": mode, "duration_s": s.duration_s, "baseline_s": s.baseline_s}
    workdir.mkdir(parents=True, exist_ok=True)
    with Processes(workdir) as procs:
        bed: testbed.Bed | None = None
        try:
            bed = await testbed.start(s, procs, with_guard=mode == "guard")
            await _phases(s, bed, procs, result, _for_mode(progress, mode))
        except (RuntimeError, OSError, ImportError) as e:
            result["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
            result["error_detail"] = str(e)
        finally:
            if bed is not None:
                await bed.close()
    return result


def _for_mode(progress: Progress | None, mode: str) -> Callable[..., None] | None:
    if progress is None:
        return None
    bound = progress
    return lambda phase, rec, obs: bound(mode, phase, rec, obs)


async def _phases(
    s: Scenario,
    bed: testbed.Bed,
    procs: Processes,
    result: dict[str, Any],
    progress: Callable[..., None] | None,
) -> None:
    loop = asyncio.get_running_loop()
    observer = observe.Observer(bed.sim.urls, [g.admin_url for g in bed.guards], loop.time())
    watching = asyncio.create_task(observer.run())
    try:
        urls, admin = bed.client_urls(), bed.tokens[testbed.ADMIN]
        base_rec = workload.Recorder()
        ticker = _ticker("baseline", base_rec, observer, progress)
        await workload.run_clients(
            [c for c in s.clients if c.in_baseline], urls, bed.tokens, base_rec, s.baseline_s
        )
        ticker.cancel()
        before = await observe.sim_state(bed.sim.urls, admin)
        observer.admin_token, observer.tallies = admin, observe.Tallies(before)
        flood_rec = workload.Recorder()
        result["flood_offset_s"] = round(flood_rec.t0 - observer.t0, 2)
        ticker = _ticker("flood", flood_rec, observer, progress)
        faults = asyncio.create_task(run_faults(s, bed, procs, flood_rec))
        await workload.run_clients(s.clients, urls, bed.tokens, flood_rec, s.duration_s)
        ticker.cancel()
        result["events"] = await faults if faults.done() else _cancelled(faults)
        await _heal(bed, procs)
        after = await _final_state(s, bed, admin)
        observer.tallies.absorb(after)
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    _collect(s, result, base_rec, flood_rec, observer, before, after)


def _cancelled(task: asyncio.Task[list[str]]) -> list[str]:
    task.cancel()
    return ["some faults were scheduled after the end of the run"]


async def _heal(bed: testbed.Bed, procs: Processes) -> None:
    """Wake stopped processes so the final state can be read and everything can be stopped."""
    for proc in procs.procs:
        proc.signal(signal.SIGCONT)
    for proxy in bed.proxies.values():
        await proxy.restore()
    await asyncio.sleep(0.5)


async def _final_state(s: Scenario, bed: testbed.Bed, admin: str) -> dict[str, Any]:
    """The recorder once the api-servers answer again (a crashed replica comes back by itself)."""
    for _ in range(int(s.cluster.restart_delay_s) + 8):
        state = await observe.sim_state(bed.sim.urls, admin)
        if state:
            return state
        await asyncio.sleep(1.0)
    return {}


def _ticker(
    phase: str, rec: workload.Recorder, obs: observe.Observer, progress: Callable[..., None] | None
) -> asyncio.Task[None]:
    async def tick() -> None:
        while progress is not None:
            await asyncio.sleep(1.0)
            progress(phase, rec, obs)

    return asyncio.create_task(tick())


def _collect(
    s: Scenario,
    result: dict[str, Any],
    base: workload.Recorder,
    flood: workload.Recorder,
    obs: observe.Observer,
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    names = [c.name for c in s.clients]
    result["baseline"] = {n: verdict.summarize(base.seconds[n].values()) for n in names if n in base.seconds}
    result["flood"] = {n: verdict.summarize(flood.seconds.get(n, {}).values()) for n in names}
    result["timeline"] = {n: verdict.timeline(flood.seconds.get(n, {}), s.duration_s) for n in names}
    offset = result.get("flood_offset_s", 0.0)
    result["observed"] = [
        {
            "t": round(x.t - offset, 2),
            "sim_inflight": x.sim_inflight,
            "sim_crashes": x.sim_crashes,
            "replicas_up": x.replicas_up,
            "decisions": x.decisions,
        }
        for x in obs.samples
    ]
    crashes = [x.sim_crashes for x in obs.samples if x.sim_crashes is not None]
    result["crashes"] = max(crashes) - min(crashes) if crashes else None
    up = [x.replicas_up for x in obs.samples if x.replicas_up is not None]
    result["replicas_down_max"] = s.cluster.replicas - min(up) if up else None
    if not before or not after:
        result["error"] = "the simulator's /debug/sim/state did not answer"
    tallies = obs.tallies or observe.Tallies(before)
    upstream = tallies.per("user/")
    result["upstream_per_user"] = upstream
    result["class_upstream"] = verdict.class_upstream(s, upstream)
    result["tokenreviews"] = tallies.total("tokenreviews")
    result["unauthenticated"] = tallies.total("unauthenticated")
    sars = tallies.per("sar/")
    result["subjectaccessreviews"] = sum(sars.values())
    result["class_subjectaccessreviews"] = verdict.class_upstream(s, sars)


async def run_scenario(
    s: Scenario,
    report_dir: Path,
    *,
    modes: Sequence[str] = ("direct", "guard"),
    progress: Progress | None = None,
) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix=f"chaos-{s.name}-") as tmp:
        for mode in modes:
            runs[mode] = await run_once(s, mode, Path(tmp) / mode, progress)
    judged = verdict.judge(s, runs)
    summary = {"scenario": s.name, "description": s.description, "runs": runs, "verdict": judged}
    report.write(s, summary, report_dir)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenario", help=f"a scenario name, a YAML path, or all ({', '.join(scenario.available())})"
    )
    parser.add_argument("--report", type=Path, default=Path("reports/chaos"), help="report directory")
    parser.add_argument(
        "--short", action="store_true", help="short runs (~12 s each) to check the suite works"
    )
    parser.add_argument("--only", choices=("direct", "guard"), help="run only one of the two runs")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos run")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    names = scenario.available() if args.scenario == "all" else [args.scenario]
    try:
        scenarios = [scenario.load(n) for n in names]
    except scenario.ScenarioError as e:
        print(f"chaos run: {e}", file=sys.stderr)
        return 2
    modes = (args.only,) if args.only else ("direct", "guard")
    summaries = []
    for s in scenarios:
        s = s.shortened() if args.short else s
        out = args.report / s.name if args.scenario == "all" else args.report
        print(f"== {s.name}: {s.description}", flush=True)
        summaries.append(asyncio.run(run_scenario(s, out, modes=modes)))
        print(report.verdict_table([summaries[-1]]), flush=True)
    if len(summaries) > 1:
        report.write_index(summaries, args.report)
        print(report.verdict_table(summaries))
    print(f"report: {args.report.resolve()}")
    return 0 if all(x["verdict"]["passed"] for x in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
