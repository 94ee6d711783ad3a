"""manifests/monitoring's alert rules pass `promtool check rules`, and `promtool test rules` with
tests/promtool/alerts.test.yaml, which has for every alert a case where it fires and one where it does
not. The PrometheusRule is a Kubernetes object: its rendered `spec` is the rules file promtool reads.
The promtool tests are skipped when promtool is missing (`make test` installs it: scripts/system-deps.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_manifests_metrics import rules
from tests.unit.test_manifests_render import ROOT, find, render

UNIT_TESTS = ROOT / "tests" / "promtool" / "alerts.test.yaml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed "
                                    "(scripts/system-deps.sh promtool: Debian's prometheus package)")


def rules_file(directory: Path) -> Path:
    """The rendered PrometheusRule's spec, as the rules file promtool reads, in `directory`."""
    (rule,) = find(render("monitoring"), "PrometheusRule")
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def cases() -> list[dict[str, Any]]:
    """Every alert_rule_test of the unit-test file."""
    doc = yaml.safe_load(UNIT_TESTS.read_text())
    assert doc["rule_files"] == ["rules.yaml"]
    return [case for test in doc["tests"] for case in test["alert_rule_test"]]


def test_every_alert_has_a_case_that_fires_and_one_that_does_not() -> None:
    """No alert is untested, and no test names an alert that does not exist."""
    names = {r["alert"] for r in rules()}
    fires = {c["alertname"] for c in cases() if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases() if not c["exp_alerts"]}
    assert sorted(names - fires) == [], "alerts without a case that fires"
    assert sorted(names - quiet) == [], "alerts without a case that stays quiet"
    assert sorted((fires | quiet) - names) == []


@needs_promtool
def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    """`promtool check rules`: every expression parses, every template compiles."""
    out = promtool("check", "rules", str(rules_file(tmp_path)), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout


@needs_promtool
def test_promtool_unit_tests_of_every_alert_pass(tmp_path: Path) -> None:
    """`promtool test rules`: each alert fires, with its labels and annotations, exactly when meant to."""
    rules_file(tmp_path)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    out = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@needs_promtool
def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The run above is not vacuous: a rule that never fires makes promtool fail."""
    path = rules_file(tmp_path)
    spec = yaml.safe_load(path.read_text())
    for group in spec["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "GuardReplicaDown":
                rule["expr"] = "vector(0) > 1"
    path.write_text(yaml.safe_dump(spec))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    out = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert out.returncode != 0 and "GuardReplicaDown" in out.stdout + out.stderr
