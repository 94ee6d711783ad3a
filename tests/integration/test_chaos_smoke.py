"""The chaos suite itself keeps working: short runs of two scenarios, without and with guard,
produce a complete report whose counts are plausible."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chaos import scenario

SCENARIOS = ("list-storm", "revoked-token")


def runs_available() -> bool:
    probe = subprocess.run([sys.executable, "-m", "chaos", "sim", "--help"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not runs_available(), reason="`python -m chaos sim` is not built yet")


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, Path, str]]:
    """Run both scenarios at once (each --short) and keep exit code, report dir and output."""
    out = tmp_path_factory.mktemp("chaos")
    started = {}
    for name in SCENARIOS:
        argv = [sys.executable, "-m", "chaos.runner", name, "--short", "--report", str(out / name)]
        started[name] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = {}
    for name, proc in started.items():
        try:
            output, _ = proc.communicate(timeout=150)
        finally:
            proc.kill()
        done[name] = (proc.returncode, out / name, output)
    return done


def summary(reports: dict[str, tuple[int, Path, str]], name: str) -> dict[str, Any]:
    code, folder, output = reports[name]
    assert code in (0, 1), output  # 0 or 1 is a verdict; anything else is the suite breaking
    return json.loads((folder / "summary.json").read_text())


@pytest.mark.parametrize("name", SCENARIOS)
def test_report_is_complete_and_self_contained(reports: dict[str, tuple[int, Path, str]], name: str) -> None:
    """report.html embeds its plots, the PNGs exist, summary.json holds both runs without errors."""
    data = summary(reports, name)
    folder = reports[name][1]
    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "http://" not in page and "https://" not in page
    for png in ("clients.png", "control-plane.png", "decisions.png"):
        assert (folder / png).read_bytes()[:4] == b"\x89PNG"
    assert set(data["runs"]) == {"direct", "guard"}
    assert [r.get("error") for r in data["runs"].values()] == [None, None], data["runs"]
    assert "PASS" in reports[name][2] or "FAIL" in reports[name][2]


def test_well_behaved_counts_are_plausible(reports: dict[str, tuple[int, Path, str]]) -> None:
    """The steady class sent about rate x clients x seconds, and the simulator saw them directly."""
    data = summary(reports, "list-storm")
    s = scenario.load("list-storm").shortened()
    steady = next(c for c in s.clients if c.role == "well-behaved")
    expected = steady.rate * steady.count * s.duration_s  # type: ignore[operator]
    for run in data["runs"].values():
        sent = run["flood"]["well-behaved"]["requests"]
        assert 0.6 * expected <= sent <= 1.1 * expected
        assert len(run["timeline"]["well-behaved"]) == int(s.duration_s)
    direct = data["runs"]["direct"]
    assert direct["class_upstream"]["runaway"] > 0
    assert direct["class_upstream"]["well-behaved"] >= direct["flood"]["well-behaved"]["ok"] * 0.9
    assert any(x["sim_inflight"] is not None for x in direct["observed"])


def test_guard_run_records_decisions_and_holds_the_runaway(reports: dict[str, tuple[int, Path, str]]) -> None:
    """Through guard the runaway gets 429s with Retry-After and guard's decisions are sampled."""
    guard = summary(reports, "list-storm")["runs"]["guard"]
    runaway = guard["flood"]["runaway"]
    assert runaway["throttled_429"] > 0
    assert runaway["retry_after_mean_s"] is not None and runaway["retry_after_mean_s"] >= 1
    assert any(x["decisions"] for x in guard["observed"])
    assert guard["class_upstream"]["runaway"] < runaway["requests"]


def test_revoked_token_reaches_the_api_server_only_without_guard(
    reports: dict[str, tuple[int, Path, str]],
) -> None:
    """Straight at the api-server every retry is an unauthenticated request; through guard few are."""
    runs = summary(reports, "revoked-token")["runs"]
    assert runs["direct"]["unauthenticated"] > 100
    assert runs["guard"]["unauthenticated"] < runs["direct"]["unauthenticated"] / 10
