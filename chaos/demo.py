"""`python -m chaos demo`: a runaway client brings down a simulated cluster, second by second.

It starts `python -m chaos sim` with three replicas, seeded pods (a full LIST is a few MB) and a
memory budget a LIST storm can exceed; then a well-behaved client doing small GETs at a steady
rate and, after a calm start, a runaway LISTing every pod with many workers. Each second it prints
what the well-behaved client experienced and how many replicas are up; at the end, a summary.
This module never leaves a process running: the simulator is killed on every way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from chaos.clients import FAILED, OK, REFUSED, REJECTED, FloodClient, Second, Stats, SteadyClient
from chaos.processes import Processes, start_sim

TOKEN = "demo-admin-token"
HEADER = "   t  well-behaved ok      p50      p99   runaway ok/429/err     up  crashes"


@dataclass(frozen=True)
class ClusterView:
    """What the replicas' /metrics said at one instant."""

    up: int
    replicas: int
    crashes: int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=int, default=30, help="seconds to run (default 30)")
    p.add_argument("--replicas", type=int, default=3, help="api-server replicas (default 3)")
    p.add_argument("--seed-objects", type=int, default=1500, help="pods pre-created (default 1500)")
    p.add_argument("--seed-object-bytes", type=int, default=2048, help="bytes per seeded pod (default 2048)")
    p.add_argument("--memory-budget-mb", type=float, default=16.0, help="per replica (default 16)")
    p.add_argument("--restart-delay-s", type=float, default=3.0, help="crashed replica downtime (default 3)")
    p.add_argument("--flood-concurrency", type=int, default=16, help="runaway LIST workers (default 16)")
    p.add_argument("--flood-after", type=int, default=3, help="calm seconds before the runaway starts")
    p.add_argument("--steady-rate", type=float, default=20.0, help="well-behaved GETs/s (default 20)")


def invalid(args: argparse.Namespace) -> str:
    """One line saying what is wrong with the arguments, or "" when nothing is."""
    if min(args.duration, args.replicas, args.flood_concurrency) < 1 or args.steady_rate <= 0:
        return "--duration, --replicas, --flood-concurrency and --steady-rate must be positive"
    return ""


def sim_args(args: argparse.Namespace, token_file: Path) -> list[str]:
    return [
        "--token-file", str(token_file),
        "--seed-objects", str(args.seed_objects),
        "--seed-object-bytes", str(args.seed_object_bytes),
        "--memory-budget-mb", str(args.memory_budget_mb),
        "--restart-delay-s", str(args.restart_delay_s),
    ]  # fmt: skip


async def view(urls: list[str]) -> ClusterView:
    """Probe every replica's /metrics on a fresh connection: refused means down."""
    up, crashes = 0, 0
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(force_close=True)) as s:
        for url in urls:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with s.get(url + "/metrics") as r:
                    text = await r.text()
                    up += 1
                    crashes = max(crashes, _sum_samples(text, "sim_crashes_total"))
    return ClusterView(up=up, replicas=len(urls), crashes=crashes)


def _sum_samples(text: str, name: str) -> int:
    prefix = name + "{"
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms"


def _failed(second: Second) -> int:
    return second.counts.get(FAILED, 0) + second.counts.get(REFUSED, 0)


def _latency(second: Second) -> tuple[str, str]:
    return ms(second.percentile(0.5)), ms(second.percentile(0.99))


def row(t: int, steady: Second, flood: Second, cluster: ClusterView) -> str:
    """One line of the per-second table."""
    runaway = f"{flood.counts.get(OK, 0)}/{flood.counts.get(REJECTED, 0)}/{_failed(flood)}"
    p50, p99 = _latency(steady)
    up = f"{cluster.up:>2}/{cluster.replicas:<2}"
    ok = f"{steady.share(OK) * 100:.1f}%"
    return f"{t:>3}s  {ok:>15}  {p50:>7}  {p99:>7}  {runaway:>19}  {up:>5}  {cluster.crashes}"


def summary(steady: Second, flood: Second, cluster: ClusterView, down_seconds: int) -> str:
    p50, p99 = _latency(steady)
    served, rejected = flood.counts.get(OK, 0), flood.counts.get(REJECTED, 0)
    return "\n".join(
        [
            "",
            f"well-behaved client: {steady.counts.get(OK, 0)}/{steady.total} ok "
            f"({steady.share(OK) * 100:.1f}%), p50 {p50}, p99 {p99}",
            f"runaway client: {served} LISTs served, {rejected} rejected, {_failed(flood)} failed",
            f"replica crashes: {cluster.crashes}; seconds with a replica down: {down_seconds}",
        ]
    )


async def drive(urls: list[str], args: argparse.Namespace, out: list[str]) -> None:
    """Run both clients for the duration, printing a row per second and the summary."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    steady = SteadyClient(urls, TOKEN, rate=args.steady_rate, stats=Stats(start))
    flood = FloodClient(urls, TOKEN, concurrency=args.flood_concurrency, stats=Stats(start))
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        tasks = [loop.create_task(steady.run(session, stop))]
        emit(out, HEADER)
        down, cluster = 0, ClusterView(len(urls), len(urls), 0)
        for t in range(args.duration):
            if t == args.flood_after:
                tasks.append(loop.create_task(flood.run(session, stop)))
            await asyncio.sleep(max(0.0, start + t + 1 - loop.time()))
            seen = await view(urls)
            # With every replica down nobody reports the count: keep the last one seen.
            cluster = ClusterView(seen.up, seen.replicas, max(seen.crashes, cluster.crashes))
            down += cluster.up < cluster.replicas
            emit(out, row(t + 1, steady.stats.second(t), flood.stats.second(t), cluster))
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    emit(out, summary(steady.stats.overall(), flood.stats.overall(), cluster, down))


def emit(out: list[str], line: str) -> None:
    out.append(line)
    print(line, flush=True)


async def _run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="chaos-demo-") as tmp:
        workdir = Path(tmp)
        token_file = workdir / "tokens.csv"
        token_file.write_text(f'{TOKEN},demo-admin,demo-admin-uid,"system:masters"\n')
        with Processes(workdir) as procs:
            sim = await start_sim(procs, sim_args(args, token_file), args.replicas)
            print(f"simulated api-server: {' '.join(sim.urls)} ({args.seed_objects} pods, "
                  f"memory budget {args.memory_budget_mb:g} MB per replica)", flush=True)  # fmt: skip
            print(
                f"runaway LISTs start at t={args.flood_after}s with {args.flood_concurrency} workers\n",
                flush=True,
            )
            await drive(sim.urls, args, [])
    return 0


def run(args: argparse.Namespace) -> int:
    """The `python -m chaos demo` entry the chaos dispatcher calls."""
    problem = invalid(args)
    if problem:
        print(f"chaos demo: {problem}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130
    except RuntimeError as e:
        print(f"chaos demo: {e}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos demo", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
