"""`python -m bench.profile [--redis] [--no-policies] [--syscalls] [--source DIR] [--duration S] ...`: where
guard spends its CPU per request under wrk load, by function (py-spy), or its system calls per
request (`--syscalls`, strace -c).

It starts the benchmark's static upstream (nginx when installed, else the Python one), one `guard
serve` set up as the benchmark's guard-policies target (or guard-redis), warms it, then runs wrk for
`--duration` seconds while py-spy samples guard (native frames off, idle samples dropped), and
prints two tables: the functions where samples end (self) and the ones they pass through
(inclusive), each with its share of guard's busy samples and an estimate in µs per request (its
share of the CPU guard spent per request, read from /proc over the same run). py-spy is an optional
tool (`pip install py-spy`): without it this says so and exits 1.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench import targets
from bench.load import run_wrk, write_script
from bench.procs import Processes, Skip, cpu_seconds, raise_file_limit


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--redis", action="store_true", help="guard with Redis federation (guard-redis)")
    parser.add_argument("--no-policies", action="store_true", help="guard with no policies (guard)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sampled load (default 10)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second (default 250)")
    parser.add_argument("--top", type=int, default=25, help="rows per table (default 25)")
    parser.add_argument("--native", action="store_true", help="sample C frames too (py-spy --native)")
    parser.add_argument("--raw", type=Path, help="also keep py-spy's collapsed stacks in this file")
    parser.add_argument("--syscalls", action="store_true",
                        help="count system calls per request with strace -c instead of sampling")
    parser.add_argument("--source", type=Path, metavar="CHECKOUT",
                        help="profile the guard of this checkout (e.g. a `git worktree` of main)")
    parser.add_argument("--lines", action="store_true", help="self table by source line, not function")
    return parser


def _frame(frame: str, *, line: bool = False) -> str:
    """`function (path/to/module.py:line)` → `module path:function` (`:line` kept when asked): guard's
    modules from their package down, libraries from site-packages down, the standard library's bare."""
    name, _, where = frame.partition(" (")
    path, _, number = where.rstrip(")").rpartition(":")
    if line:
        name = f"{name}:{number}"
    short = path.rsplit("/", 1)[-1]
    for marker in ("site-packages/", "guard/", "lib/python3"):
        if marker in path:
            tail = path.rsplit(marker, 1)[1]
            short = tail.split("/", 1)[-1] if marker == "lib/python3" else tail
            break
    return f"{short}:{name}"


IDLE = ("epoll_wait", "epoll_pwait", "PyThread_acquire_lock", "_queue_SimpleQueue_get")
"""C frames of a thread waiting, not working (py-spy counts some of them as busy)."""


def _idle(frames: list[str]) -> bool:
    """A sample of a thread that waits: in epoll, on a lock, or any thread but the event loop's."""
    if not any(f.startswith("run (asyncio/runners.py") or "runners.py" in f for f in frames):
        return True
    return any(f.startswith(IDLE) for f in frames[-3:])


def tally(collapsed: str, *, lines: bool = False) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, self counts, inclusive counts) of py-spy's raw (collapsed stacks) output; `lines`:
    self counts by source line."""
    total, own, through = 0, Counter[str](), Counter[str]()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not raw or _idle(raw):
            continue
        frames = [_frame(f) for f in raw]
        total += count
        own[_frame(raw[-1], line=lines)] += count
        for name in set(frames):
            through[name] += count
    return total, own, through


def table(title: str, counts: Counter[str], total: int, per_request_us: float, top: int) -> str:
    rows = [f"| {title} | share | µs/req |", "| --- | ---: | ---: |"]
    for name, count in counts.most_common(top):
        share = count / max(1, total)
        rows.append(f"| `{name}` | {share:.1%} | {share * per_request_us:.1f} |")
    return "\n".join(rows)


def _sampler(args: argparse.Namespace, pid: int, out: Path) -> subprocess.Popen[bytes]:
    if args.syscalls:
        argv = [shutil.which("strace") or "strace", "-c", "-f", "-o", str(out), "-p", str(pid)]
    else:
        argv = [_spy(), "record", "--pid", str(pid), "--rate", str(args.rate), "--format", "raw",
                "--output", str(out), "--duration", str(round(args.duration) + 1),
                *(["--native"] if args.native else [])]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def syscalls_table(summary: str, requests: int) -> str:
    """strace -c's summary as system calls per request, most frequent first."""
    rows = ["| system call | calls | per request |", "| --- | ---: | ---: |"]
    found: list[tuple[int, str]] = []
    for line in summary.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0].replace(".", "").isdigit() and parts[-1] != "total":
            found.append((int(parts[3]), parts[-1]))
    total = sum(calls for calls, _ in found)
    for calls, name in sorted(found, reverse=True):
        rows.append(f"| {name} | {calls:,} | {calls / max(1, requests):.2f} |")
    rows.append(f"| all | {total:,} | {total / max(1, requests):.2f} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tool = shutil.which("strace") if args.syscalls else (_spy() if Path(_spy()).exists() else None)
    if tool is None:
        print("bench.profile: " + ("strace not found" if args.syscalls else "py-spy not found (pip install "
                                   "py-spy)"), file=sys.stderr)
        return 1
    raise_file_limit()
    workdir = Path(tempfile.mkdtemp(prefix="guard-profile-"))
    procs = Processes(workdir)
    try:
        env = targets.Env(workdir, procs, baseline=args.source)
        try:
            env.upstream = targets.start_nginx_static(env)
        except Skip:
            env.upstream = targets.start_upstream(env)
        guard = targets.guard(policies=not args.no_policies, redis=args.redis,
                              baseline=args.source is not None)(env)
        script = write_script(workdir)
        run_wrk(guard.port, 2, script)  # warm-up: connections, caches, TokenReview
        out = workdir / "profile.txt"
        sampler = _sampler(args, guard.pid, out)
        if args.syscalls:
            time.sleep(1)  # strace attaches
        before = cpu_seconds(guard.pid)
        load = run_wrk(guard.port, args.duration, script)
        spent = cpu_seconds(guard.pid) - before
        if args.syscalls:
            sampler.send_signal(signal.SIGINT)  # strace -c prints its summary when interrupted
        sampler.wait(timeout=args.duration + 60)
        per_request = spent * 1e6 / max(1, load.requests)
        text = out.read_text() if out.exists() else ""
        if args.raw is not None:
            args.raw.write_text(text)
    except Skip as e:
        print(f"bench.profile: cannot run: {e}", file=sys.stderr)
        return 1
    finally:
        procs.close()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.syscalls:  # strace slows guard down: only the counts mean anything
        print(f"{load.requests:,} requests under strace\n")
        print(syscalls_table(text, load.requests))
        return 0
    total, own, through = tally(text, lines=args.lines)
    print(f"{load.rps:,.0f} req/s, p99 {load.p99_ms:.2f} ms, guard CPU {per_request:.1f} µs/req, "
          f"{total:,} busy samples\n")
    print(table("self (where samples end)", own, total, per_request, args.top) + "\n")
    print(table("inclusive (what samples pass through)", through, total, per_request, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
