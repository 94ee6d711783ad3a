"""Render a benchmark run as Markdown: the machine, how the upstream was chosen, the throughput
table with ratios against `kubectl proxy` and direct, memory, decision cost, and the issue-7
targets with ✅/❌. Also describes the machine (CPU, kernel, program versions).
It only reads and formats; it never measures.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from bench.h2 import WatchMemory
from bench.memory import ListFigure
from bench.results import MIB, Results, Throughput, verdicts

PROGRAMS = {
    "kubectl": ["kubectl", "version", "--client"],
    "nginx": ["nginx", "-v"],
    "haproxy": ["haproxy", "-v"],
    "wrk": ["wrk", "--version"],
    "h2load": ["h2load", "--version"],
    "redis-server": ["redis-server", "--version"],
}


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0][:100] if lines else "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def describe_machine() -> dict[str, str]:
    machine = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{_cpu_model()}, {os.cpu_count()} cores",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        # The machine is shared; a high load at the start explains figures that differ between runs.
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    for package in ("aiohttp", "uvloop"):
        try:
            machine[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            machine[package] = "not installed"
    machine.update({name: _first_line(argv) for name, argv in PROGRAMS.items()})
    return machine


def _ratio(results: Results, row: Throughput, baseline: str) -> str:
    ratio = results.ratio(row.name, baseline)
    return f"{ratio:.2f}x" if ratio is not None else "—"


def throughput_table(results: Results) -> list[str]:
    lines = [
        "| target | set-up | req/s (median) | p50 ms | p99 ms | x kubectl proxy | x direct "
        "| CPU µs/req | CPU x kubectl proxy | failed |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    proxy = results.target("kubectl-proxy")
    proxy_cpu = proxy.cpu_us if proxy is not None and proxy.rounds else 0.0
    for row in results.throughput:
        if not row.rounds:
            lines.append(f"| {row.name} | {row.what} | skipped: {row.skipped} | | | | | | | |")
            continue
        cpu_ratio = f"{row.cpu_us / proxy_cpu:.2f}x" if proxy_cpu else "—"
        lines.append(
            f"| {row.name} | {row.what} | {row.rps:,.0f} | {row.p50_ms:.2f} | {row.p99_ms:.2f} "
            f"| {_ratio(results, row, 'kubectl-proxy')} | {_ratio(results, row, 'direct')} "
            f"| {row.cpu_us:.0f} | {cpu_ratio} | {row.failed_share:.1%} |"
        )
    return lines


def memory_section(results: Results) -> list[str]:
    lines = ["## Memory", ""]
    if results.watches:
        lines += ["| idle watches (asked) | open | guard RSS MiB |", "| ---: | ---: | ---: |"]
        lines += [f"| {p.wanted:,} | {p.opened:,} | {p.rss / MIB:.1f} |" for p in results.watches]
    else:
        lines.append(f"Idle watches: skipped: {results.watches_skipped or 'not run'}")
    lines += [
        "",
        "| LIST of ~100 MB via | MB | MB/s | RSS before MiB | RSS peak MiB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for via, figure in results.lists.items():
        if isinstance(figure, ListFigure):
            lines.append(
                f"| {via} | {figure.bytes / 1e6:.0f} | {figure.rate / 1e6:.0f} "
                f"| {figure.rss_before / MIB:.1f} | {figure.rss_peak / MIB:.1f} |"
            )
        else:
            lines.append(f"| {via} | skipped: {figure} | | | |")
    return lines


def h2_watch_section(figure: WatchMemory | str) -> list[str]:
    lines = ["## Idle watches over HTTP/2 and HTTP/1.1 (TLS, one guard)", ""]
    if isinstance(figure, str):
        return [*lines, f"skipped: {figure}"]
    lines += ["| watches held as | asked | open | guard RSS growth MiB | KiB per watch |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for way, opened, growth in (("streams of one HTTP/2 connection", figure.h2_opened, figure.h2_growth),
                                ("HTTP/1.1 connections", figure.h1_opened, figure.h1_growth)):
        per = f"{growth / 1024 / opened:.1f}" if opened else "—"
        lines.append(f"| {way} | {figure.count:,} | {opened:,} | {growth / MIB:.1f} | {per} |")
    return lines


def render(results: Results, *, title: str = "guard benchmark results") -> str:
    lines = [f"# {title}", "", "| machine | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in results.machine.items()]
    lines += ["", "## Targets (issue 7)", "", "| target | measured | met |", "| --- | --- | :---: |"]
    for verdict in verdicts(results):
        mark = "—" if verdict.met is None else ("✅" if verdict.met else "❌")
        lines.append(f"| {verdict.goal} | {verdict.measured} | {mark} |")
    lines += ["", "## Throughput: GET of one small object, wrk, 32 connections, 2 threads", ""]
    if results.upstream_choice:
        lines += [
            "Static upstream candidates (direct): "
            + "; ".join(f"{n}: {f}" for n, f in results.upstream_choice)
        ]
        lines.append("")
    lines += throughput_table(results)
    if results.watches or results.watches_skipped or results.lists:
        lines += ["", *memory_section(results)]
    if results.h2_watches != "not run":
        lines += ["", *h2_watch_section(results.h2_watches)]
    cost = results.decision
    if cost != "not run":
        lines += ["", "## Admission decision cost (in-process)", ""]
        lines.append(cost if isinstance(cost, str) else f"p50 {cost.p50_us:.2f} µs, p99 {cost.p99_us:.2f} µs "
                     f"over {cost.decisions:,} decisions")  # fmt: skip
    if results.notes:
        lines += ["", "## Notes", "", *[f"- {note}" for note in results.notes]]
    return "\n".join(lines) + "\n"
