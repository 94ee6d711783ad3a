"""`python -m chaos demo` prints a row per second and shows a runaway crashing replicas."""

import subprocess
import sys
from pathlib import Path


def test_demo_shows_the_runaway_crashing_replicas(tmp_path: Path) -> None:
    """A short demo with a small budget prints its table and shows replicas going down."""
    argv = [sys.executable, "-m", "chaos", "demo", "--duration", "5", "--flood-after", "1",
            "--seed-objects", "300", "--memory-budget-mb", "1", "--restart-delay-s", "1",
            "--only", "direct", "--baseline", "2", "--report", str(tmp_path)]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.strip().split(" ", 1)[0].endswith("s")]
    assert len(rows) >= 5
    # Crash counts come from a live replica's /metrics; with all down the down-seconds show it.
    down = int(result.stdout.rsplit("seconds with a replica down: ", 1)[1].split()[0])
    assert down >= 1
    assert rows[0].split()[1] == "100.0%"  # before the runaway starts, the neighbour is fine

