"""`python -m bench.ab --baseline CHECKOUT [--checkout DIR] [--redis] [--pairs N] [--duration S]`: this
checkout's guard (or DIR's) against an earlier one, as paired runs.

Both guards (set up as the benchmark's guard-policies, or guard-redis with `--redis`) run side by
side against one static upstream; each pair is one short wrk run against each, in alternating order,
and the figure compared is the ratio within the pair (CPU µs per request, from /proc; requests/s).
On a shared machine whose load drifts by tens of percent from minute to minute, the median of the
paired ratios resolves a step of a few percent that medians taken separately cannot.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench import targets
from bench.load import LoadResult, run_wrk, write_script
from bench.procs import Processes, Skip, cpu_seconds, raise_file_limit
from bench.targets import Running


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, metavar="CHECKOUT",
                        help="the earlier checkout (e.g. a `git worktree` of main)")
    parser.add_argument("--checkout", type=Path, metavar="CHECKOUT",
                        help="measure this checkout's guard instead of the one beside this benchmark")
    parser.add_argument("--redis", action="store_true", help="both with Redis federation (guard-redis)")
    parser.add_argument("--pairs", type=int, default=10, help="paired runs (default 10)")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per run (default 2)")
    return parser


def _measure(running: Running, duration: float, script: Path) -> LoadResult:
    before = cpu_seconds(running.pid)
    result = run_wrk(running.port, duration, script)
    spent = cpu_seconds(running.pid) - before
    return LoadResult(result.rps, result.p50_ms, result.p99_ms, result.requests, result.non2xx,
                      result.socket_errors, cpu_us=spent * 1e6 / max(1, result.requests))


def pairs_table(pairs: list[tuple[LoadResult, LoadResult]]) -> str:
    """Each pair (this, baseline) and the medians of the paired ratios."""
    rows = ["| pair | µs/req | baseline µs/req | ratio | req/s | baseline req/s | ratio |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, (one, base) in enumerate(pairs, 1):
        rows.append(f"| {i} | {one.cpu_us:.1f} | {base.cpu_us:.1f} | {one.cpu_us / base.cpu_us:.3f} | "
                    f"{one.rps:,.0f} | {base.rps:,.0f} | {one.rps / base.rps:.3f} |")
    cpu = statistics.median(one.cpu_us / base.cpu_us for one, base in pairs)
    rps = statistics.median(one.rps / base.rps for one, base in pairs)
    rows.append(f"| median | {statistics.median(p[0].cpu_us for p in pairs):.1f} | "
                f"{statistics.median(p[1].cpu_us for p in pairs):.1f} | **{cpu:.3f}** | "
                f"{statistics.median(p[0].rps for p in pairs):,.0f} | "
                f"{statistics.median(p[1].rps for p in pairs):,.0f} | **{rps:.3f}** |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    raise_file_limit()
    workdir = Path(tempfile.mkdtemp(prefix="guard-ab-"))
    procs = Processes(workdir)
    pairs: list[tuple[LoadResult, LoadResult]] = []
    try:
        env = targets.Env(workdir, procs, baseline=args.baseline)
        try:
            env.upstream = targets.start_nginx_static(env)
        except Skip:
            env.upstream = targets.start_upstream(env)
        if args.checkout is not None:  # the "after" side from another checkout: its own files
            (workdir / "after").mkdir()
            after = replace(env, workdir=workdir / "after", baseline=args.checkout, tag="after-")
            one = targets.guard(policies=True, redis=args.redis, baseline=True)(after)
        else:
            one = targets.guard(policies=True, redis=args.redis)(env)
        base = targets.guard(policies=True, redis=args.redis, baseline=True)(env)
        script = write_script(workdir)
        for running in (one, base):
            run_wrk(running.port, 2, script)  # warm-up: connections, caches, TokenReview
        for i in range(args.pairs):
            order = (one, base) if i % 2 == 0 else (base, one)
            first, second = (_measure(r, args.duration, script) for r in order)
            pairs.append((first, second) if i % 2 == 0 else (second, first))
            print(f"pair {i + 1}/{args.pairs}", file=sys.stderr, flush=True)
    except Skip as e:
        print(f"bench.ab: cannot run: {e}", file=sys.stderr)
        return 1
    finally:
        procs.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(pairs_table(pairs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
