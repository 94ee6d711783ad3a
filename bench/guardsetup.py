"""How the benchmark runs guard: the command, whether `guard serve` exists yet and which options it
has, a guard.yaml pointing at the static upstream, and the policy directory (the example policies
plus one bench tenant whose quota is far above what the load can reach, so every request is
admitted after the full identity → classify → match → admit path).
It writes files in the benchmark's work directory only; it never edits the repository.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

from bench.procs import REPO

GUARD_TOKEN = "bench-guard-credential"

BENCH_POLICY = """apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata:
  name: bench
spec:
  precedence: 5000
  subjects:
    - {kind: Group, name: bench}
  rules:
    - name: reads
      verbs: [get, list, watch]
      apiGroups: ["*"]
      resources: ["*"]
      namespaces: ["*"]
      quota: {rate: 1000000/s, burst: 1000000, scope: tenant}
      maxInflight: 10000
      # 40 seats: wrk's 32 connections never queue. On global-default (20 seats) 12 requests
      # always waited in the fair queue, so the figure measured a deliberate queue, not guard.
      priorityLevel: workload-high
"""


def command() -> list[str]:
    return [sys.executable, "-m", "guard.cli", "serve"]


@functools.cache
def serve_help() -> str | None:
    """`guard serve --help`, or None while `guard serve` is not built."""
    try:
        done = subprocess.run([*command(), "--help"], capture_output=True, text=True, timeout=30, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def supports(option: str) -> bool:
    help_text = serve_help()
    return help_text is not None and option in help_text


def write_policies(directory: Path) -> Path:
    """The repository's example policies, plus the bench tenant; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for example in sorted((REPO / "policies").glob("*.y*ml")):
        shutil.copy(example, directory / example.name)
    (directory / "zz-bench.yaml").write_text(BENCH_POLICY)
    return directory


def write_config(
    path: Path,
    *,
    port: int,
    admin: int,
    upstream: int,
    policies: Path | None = None,
    redis: str | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Path:
    lines = [
        f"listen: 127.0.0.1:{port}",
        f"admin: 127.0.0.1:{admin}",
        "clusters:",
        "  - name: bench",
        f"    server: http://127.0.0.1:{upstream}",
        f"    token: {GUARD_TOKEN}",
        "forwarding: passthrough",
        "limits: {maxConnections: 30000%s}  # the memory figure holds 10,000 watches at once"
        % (", http2MaxStreams: 1000" if tls is not None else ""),  # and 1,000 streams on one connection
    ]
    if tls is not None:
        lines.append(f"tls: {{cert: {tls[0]}, key: {tls[1]}}}")
    if policies is not None:
        lines.append(f"policies: {policies}")
    if redis is not None:
        lines.append(f"redis: {redis}")
    path.write_text("\n".join(lines) + "\n")
    return path
