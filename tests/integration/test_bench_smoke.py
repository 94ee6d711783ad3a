"""The benchmark harness keeps working: a smoke run measures direct and the peers it can start, and
writes a table with one row per target (a number, or the reason it was skipped)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_writes_a_row_per_target(tmp_path: Path) -> None:
    """`python -m bench --smoke` writes a table naming direct, kubectl-proxy and guard, not RESULTS.md."""
    output = tmp_path / "smoke.md"
    results = ROOT / "bench" / "RESULTS.md"
    before = results.stat().st_mtime_ns if results.exists() else None
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = output.read_text()
    for name in ("direct", "kubectl-proxy", "guard"):
        assert re.search(rf"^\| {name} \| .+ \| (skipped: .+|[\d,]+ \| [\d.]+ \| [\d.]+) \|", table, re.M), (
            name
        )
    if shutil.which("wrk"):
        assert re.search(r"^\| direct \| .+ \| [\d,]+ \| ", table, re.M), "direct was not measured"
    assert (results.stat().st_mtime_ns if results.exists() else None) == before
