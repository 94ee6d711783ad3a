"""`python -m bench [--rounds N] [--duration S] [--smoke] [--only NAMES] [--output PATH]`: run the
benchmark against the peers, print the Markdown table and write it to bench/RESULTS.md (or, with
--smoke, one short round of a few targets written to a temporary file).
It installs missing peers only through scripts/system-deps.sh, and never writes RESULTS.md on a smoke run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench import runner, targets
from bench.procs import REPO, Skip, raise_file_limit
from bench.report import render

RESULTS = REPO / "bench" / "RESULTS.md"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per target (default 3)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per round (default 5)")
    parser.add_argument(
        "--smoke", action="store_true", help="one 1-second round of direct, kubectl proxy, guard"
    )
    names = ", ".join([t.name for t in targets.TARGETS] + list(runner.SECTIONS))
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {names}")
    parser.add_argument("--output", type=Path, help="where to write the table (default bench/RESULTS.md)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                        help="also measure the guard of this checkout (e.g. a `git worktree` of main) as "
                             "guard-baseline (and guard-redis-baseline), interleaved with the others")
    return parser


def plan_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> runner.Plan:
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    if args.smoke:
        chosen = tuple(t for t in targets.TARGETS if t.name in targets.SMOKE_TARGETS)
        return runner.Plan(rounds=1, duration=1, targets=chosen, sections=frozenset(), calibrate=False)
    baseline: Path | None = args.baseline
    if baseline is not None and not any((baseline / "guard" / cli).is_file()
                                        for cli in ("cli.py", "cli/__init__.py")):
        parser.error(f"--baseline: {baseline} is not a checkout of guard (no guard/cli)")
    every = (*targets.TARGETS, *targets.BASELINES) if baseline is not None else targets.TARGETS
    plan = runner.Plan(rounds=args.rounds, duration=args.duration, targets=every, baseline=baseline)
    if not args.only:
        return plan
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    known = {t.name for t in every} | set(runner.SECTIONS)
    if unknown := wanted - known:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    chosen = tuple(t for t in every if t.name in wanted)
    return replace(plan, targets=chosen, sections=frozenset(wanted & set(runner.SECTIONS)))


def install_peers() -> None:
    """nginx, haproxy, wrk, h2load and redis from the system packages when missing (as root), else a hint."""
    script = REPO / "scripts" / "system-deps.sh"
    subprocess.run(["bash", str(script), "nginx", "haproxy", "wrk", "h2load", "redis-server"], check=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    plan = plan_from(args, parser)
    raise_file_limit()
    if not args.smoke:
        install_peers()
    workdir = Path(tempfile.mkdtemp(prefix="guard-bench-"))
    try:
        results = runner.run(plan, workdir)
    except Skip as e:
        print(f"bench: cannot run: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            runner.say(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    title = "guard benchmark smoke run" if args.smoke else "guard benchmark results"
    text = render(results, title=title)
    output = args.output or (
        Path(tempfile.mkstemp(prefix="bench-smoke-", suffix=".md")[1]) if args.smoke else RESULTS
    )
    output.write_text(text)
    print(text)
    runner.say(f"written to {output}")
    return 0
