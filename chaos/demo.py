"""`python -m chaos demo`: the headline scenario — a runaway LIST storm next to well-behaved apps,
once straight at a three-replica simulated cluster and once through guard —, second by second.

It runs `chaos/scenarios/list-storm.yaml` through the chaos runner (embedded store, no setup),
prints a row per second of each run (well-behaved success and latency, what the runaway got,
replicas up, crashes), then the verdict table and the report path. The flags tune the scenario
for quick looks. Every process it starts is stopped on every way out.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path

from chaos import observe, report, runner, scenario, workload
from chaos.scenario import Scenario

SCENARIO = "list-storm"
HEADER = "   t  well-behaved ok      p50      p99   runaway ok/429/err     up  crashes"
TITLES = {"direct": "WITHOUT guard: clients straight at the api-servers", "guard": "WITH guard in front"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=int, help="flood seconds per run (default: the scenario's, 25)")
    p.add_argument("--baseline", type=int, help="unflooded seconds before the flood (default 6)")
    p.add_argument("--replicas", type=int, help="api-server replicas (default 3)")
    p.add_argument("--seed-objects", type=int, help="pods pre-created (default 1000, a ~2 MB LIST)")
    p.add_argument("--memory-budget-mb", type=float, help="per replica (default 5)")
    p.add_argument("--restart-delay-s", type=float, help="crashed replica downtime (default 3)")
    p.add_argument("--flood-concurrency", type=int, help="runaway LIST workers (default 12)")
    p.add_argument("--flood-after", type=float, help="calm flood seconds before the runaway starts")
    p.add_argument("--only", choices=("direct", "guard"), help="run only one of the two runs")
    p.add_argument("--report", type=Path, default=Path("reports/demo"), help="report directory")


def tuned(s: Scenario, args: argparse.Namespace) -> Scenario:
    """The headline scenario with the command line's overrides applied."""
    cluster = s.cluster
    for flag, name in (
        ("replicas", "replicas"),
        ("seed_objects", "seed_objects"),
        ("memory_budget_mb", "memory_budget_mb"),
        ("restart_delay_s", "restart_delay_s"),
    ):
        if getattr(args, flag) is not None:
            cluster = replace(cluster, **{name: getattr(args, flag)})  # fmt: skip
    clients = tuple(
        replace(c, concurrency=args.flood_concurrency or c.concurrency,
                start_s=c.start_s if args.flood_after is None else args.flood_after)
        if c.role == "runaway" else c
        for c in s.clients
    )  # fmt: skip
    return replace(
        s,
        cluster=cluster,
        clients=clients,
        duration_s=args.duration or s.duration_s,
        baseline_s=s.baseline_s if args.baseline is None else args.baseline,
    )


def invalid(args: argparse.Namespace) -> str:
    """One line saying what is wrong with the arguments, or "" when nothing is."""
    numbers = (args.duration, args.replicas, args.flood_concurrency, args.seed_objects)
    if any(n is not None and n < 1 for n in numbers):
        return "--duration, --replicas, --flood-concurrency and --seed-objects must be positive"
    return ""


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


class Live:
    """Prints one row per second of each run, and each run's summary line when it ends."""

    def __init__(self, s: Scenario) -> None:
        self.s, self.mode, self.phase, self.down = s, "", "", 0
        self.steady = next(c.name for c in s.clients if c.role == "well-behaved")
        self.runaway = next((c.name for c in s.clients if c.role == "runaway"), "")

    def __call__(self, mode: str, phase: str, rec: workload.Recorder, obs: observe.Observer) -> None:
        if (mode, phase) != (self.mode, self.phase):
            if mode != self.mode:
                print(f"\n== {TITLES[mode]}\n{HEADER}", flush=True)
                self.down = 0
            print(f"-- {phase}", flush=True)
            self.mode, self.phase = mode, phase
        t = max(0, int(rec.now()) - 1)
        steady = rec.seconds[self.steady].get(t, workload.Second())
        flood = rec.seconds[self.runaway].get(t, workload.Second()) if self.runaway else workload.Second()
        last = obs.samples[-1] if obs.samples else observe.Sample(t=0)
        up = "?" if last.replicas_up is None else f"{last.replicas_up:.0f}"
        self.down += last.replicas_up is None or last.replicas_up < self.s.cluster.replicas
        ok = f"{100 * steady.ok / steady.requests:.1f}%" if steady.requests else "100.0%"
        lat = sorted(steady.latencies_ms)
        p50, p99 = (lat[len(lat) // 2], lat[min(len(lat) - 1, int(0.99 * len(lat)))]) if lat else (None, None)
        runaway = f"{flood.ok}/{flood.throttled}/{flood.requests - flood.ok - flood.throttled}"
        crashes = "?" if last.sim_crashes is None else f"{last.sim_crashes:.0f}"
        print(f"{t + 1:>3}s  {ok:>15}  {ms(p50):>7}  {ms(p99):>7}  {runaway:>19}  "
              f"{up:>2}/{self.s.cluster.replicas:<2}  {crashes}", flush=True)  # fmt: skip


def summary_lines(summary: dict[str, object]) -> list[str]:
    lines = []
    runs = summary["runs"]
    assert isinstance(runs, dict)
    for mode, run in runs.items():
        steady = run.get("flood", {}).get("well-behaved", {})
        runaway = run.get("class_upstream", {}).get("runaway")
        base = run.get("baseline", {}).get("well-behaved", {})
        lines.append(
            f"{mode:>6}: well-behaved {steady.get('ok')}/{steady.get('requests')} ok, "
            f"p99 {ms(steady.get('p99_ms'))} (baseline {ms(base.get('p99_ms'))}); "
            f"runaway LISTs reaching the api-servers: {runaway}; replica crashes: {run.get('crashes')}"
        )  # fmt: skip
    return lines


async def _run(s: Scenario, args: argparse.Namespace) -> int:
    modes = (args.only,) if args.only else ("direct", "guard")
    live = Live(s)
    print(f"{s.name}: {s.description}\n"
          f"{s.cluster.replicas} simulated api-servers, {s.cluster.seed_objects} pods, "
          f"memory budget {s.cluster.memory_budget_mb:g} MB each; {s.baseline_s:g}s baseline, "
          f"{s.duration_s:g}s flood per run", flush=True)  # fmt: skip
    summary = await runner.run_scenario(s, args.report, modes=modes, progress=live)
    print()
    for line in summary_lines(summary):
        print(line)
    print(f"seconds with a replica down: {live.down}\n")
    print(report.verdict_table([summary]))
    print(f"\nreport: {(args.report / 'report.html').resolve()}", flush=True)
    return 0 if summary["verdict"]["passed"] else 1


def run(args: argparse.Namespace) -> int:
    """The `python -m chaos demo` entry the chaos dispatcher calls."""
    problem = invalid(args)
    if problem:
        print(f"chaos demo: {problem}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(tuned(scenario.load(SCENARIO), args), args))
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, scenario.ScenarioError) as e:
        print(f"chaos demo: {e}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos demo", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
