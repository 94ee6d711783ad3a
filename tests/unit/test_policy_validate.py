"""Policy files are validated all at once, each problem naming file, line and field path."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from guard.admission.config import AdmissionSettings
from guard.admission.rules import compile_policies
from guard.policy.loading import load_policies, load_text

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "policies"
POLICIES = ROOT / "policies"

EXPECTED = {
    "bad_bool.yaml": ["10: spec.rules[0].shadow: must be true or false"],
    "bad_placement.yaml": [
        "11: spec.placement.selector.matchExpressions[0].values: must list at least one value for In",
        "12: spec.placement.selector.matchExpressions[1].values: must be empty for Exists",
        '13: spec.placement.selector.matchExpressions[2].operator: "Near" is not one of In, NotIn, Exists, '
        "DoesNotExist",
        "16: spec.rules[0].placement: must name clusters or a selector"],
    "bad_number.yaml": ["10: spec.rules[0].quota.burst: must be at least 1"],
    "bad_quarantine.yaml": ["8: spec.quarantine.threshold: must be at least 1",
                            '8: spec.quarantine.window: "soon" is not a duration like 30s, 5m'],
    "bad_rate.yaml": ['12: spec.rules[1].quota.rate: "20/q" is not a rate like 20/s, 3000/m'],
    "bad_scope.yaml": ['10: spec.rules[0].quota.scope: "cluster" is not one of tenant, user, namespace'],
    "bad_subject.yaml": ["7: spec.subjects[0].namespace: is required for a ServiceAccount",
                         '8: spec.subjects[1].kind: "Robot" is not one of User, Group, ServiceAccount'],
    "duplicate_key.yaml": ["10: spec.rules[0].quota: duplicate key"],
    "duplicate_rule.yaml": ['10: spec.rules[1].name: duplicate rule name "reads" (first at spec.rules[0])'],
    "empty_not.yaml": ["10: spec.rules[0].not: must name at least one field"],
    "missing_field.yaml": ["9: spec.rules[0].name: is required"],
    "misspelled_key.yaml": ['10: spec.rules[0].quota.rtae: unknown field "rtae" (did you mean "rate"?)',
                            "10: spec.rules[0].quota.rate: is required"],
    "mixed_urls.yaml": ["11: spec.rules[0].nonResourceURLs: cannot be combined with apiGroups, resources, "
                        "resourceNames or namespaces"],
    "override_unknown_field.yaml": ['13: spec.overrides[0].fields.maxInflite: unknown field "maxInflite" '
                                    '(did you mean "maxInflight"?)'],
    "override_unknown_rule.yaml": ['13: spec.overrides[0].rules[0]: no rule "reeds" in this policy '
                                   "(rules: reads)"],
    "tenant_twice_in_one_file.yaml": [' metadata.name: tenant "bad" is already defined in '
                                      f'{FIXTURES / "tenant_twice_in_one_file.yaml"}'],
    "unknown_verb.yaml": ['10: spec.rules[0].verbs[1]: "lsit" is not a Kubernetes verb or HTTP method'],
    "wrong_header.yaml": ['1: apiVersion: "guard.io/v1beta9" is not guard.io/v1alpha1',
                          '2: kind: "Tenant" is not TenantPolicy',
                          '4: metadata.name: "Bad_Name" must be lower-case letters, digits, "-" or "."'],
    "wrong_type.yaml": ["10: spec.rules[0].verbs: must be a list of strings"],
    "yaml_syntax.yaml": ["10: invalid YAML: expected ',' or ']', but got '<stream end>'"],
}


def _problems(*paths: Path) -> list[str]:
    policies, problems = load_policies(paths)
    return problems + compile_policies(policies, AdmissionSettings())[1]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_reports_its_error_exactly(name: str) -> None:
    """Every error kind has a fixture, and its message names file, line and field path."""
    path = FIXTURES / name
    assert _problems(path) == [f"{path}:{line}" for line in EXPECTED[name]]


def test_every_fixture_file_has_an_expectation() -> None:
    """No fixture goes unchecked."""
    names = {p.name for p in FIXTURES.glob("*.yaml")} - {"unknown_priority_level.yaml"}
    assert names == set(EXPECTED)


def test_unknown_priority_level_is_caught_against_the_settings() -> None:
    """A rule naming a level that guard.yaml does not define is an error."""
    path = FIXTURES / "unknown_priority_level.yaml"
    assert _problems(path) == [
        f'{path}: spec.rules[0].priorityLevel: unknown priority level "platinum" '
        "(known: catch-all, global-default, workload-high, workload-low)"]


def test_duplicate_tenant_names_across_files_are_errors() -> None:
    """Two files defining the same tenant cannot both be in force."""
    directory = FIXTURES / "duplicate_tenant"
    assert _problems(directory) == [
        f'{directory / "b.yaml"}: metadata.name: tenant "shared" is already defined in '
        f'{directory / "a.yaml"}']


def test_every_example_policy_validates() -> None:
    """Every file in policies/ loads without a problem."""
    files = sorted(POLICIES.glob("*.yaml"))
    assert len(files) >= 4
    policies, problems = load_policies([POLICIES])
    assert problems == []
    assert len(policies) == len(files)


def test_the_design_example_stays_valid_exactly_as_written() -> None:
    """The smallest TenantPolicy in DESIGN.md section 7 is accepted verbatim."""
    design = (ROOT.parent / "shared" / "DESIGN.md")
    text = design.read_text() if design.exists() else (POLICIES / "team-a.yaml").read_text()
    block = re.findall(r"```yaml\n(apiVersion: guard.io.*?)```", text, re.S)
    source = block[0] if block else (POLICIES / "team-a.yaml").read_text()
    (policy,), problems = load_text(source, "design")
    assert problems == []
    assert [r.name for r in policy.rules] == ["reads", "writes"]
    assert policy.rules[0].quota is not None and policy.rules[0].quota.burst == 40
    assert (POLICIES / "team-a.yaml").read_text().count("quota") == source.count("quota")


def test_rates_read_in_any_period() -> None:
    """`3000/m` and `10/100ms` are both 50 and 100 tokens per second."""
    source = (POLICIES / "ci-runners.yaml").read_text()
    (policy,), _ = load_text(source, "ci")
    quotas = {r.name: r.quota for r in policy.rules}
    assert quotas["reads"] is not None and quotas["reads"].rate == pytest.approx(50.0)
    assert quotas["secrets"] is not None and quotas["secrets"].rate == pytest.approx(100.0)


def _guard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guard.cli", "policy", *args], capture_output=True,
                          text=True, cwd=ROOT)


def test_validate_command_prints_every_error_and_exits_1() -> None:
    """`guard policy validate` over the fixtures lists the problems of every file."""
    result = _guard("validate", str(FIXTURES))
    assert result.returncode == 1
    assert "bad_rate.yaml:12: spec.rules[1].quota.rate" in result.stderr
    assert "misspelled_key.yaml:10: spec.rules[0].quota.rtae" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_command_prints_one_ok_line_per_file() -> None:
    """A valid directory gives exit 0 and an OK line per file."""
    result = _guard("validate", "policies")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(list(POLICIES.glob("*.yaml")))
    assert "policies/team-a.yaml: OK: tenant team-a" in result.stdout


def test_a_file_may_hold_several_tenants_and_a_bad_one_names_its_line(tmp_path: Path) -> None:
    """As kubectl users write manifests: documents separated by `---`, each a tenant, problems still
    naming their own line."""
    one = (FIXTURES.parent.parent.parent / "policies" / "team-a.yaml").read_text()
    (tmp_path / "all.yaml").write_text(one + "---\n" + one.replace("name: team-a", "name: team-b", 1)
                                       + "---\n" + one.replace("name: team-a", "name: team-c", 1)
                                       .replace("rate: 20/s", "rate: 0/s"))
    policies, problems = load_policies([tmp_path])
    assert policies == []  # a file with a problem is refused whole
    assert len(problems) == 1 and "spec.rules[0].quota.rate: 0/s is never a token" in problems[0]
    line = int(problems[0].split(":")[1])
    assert line > 2 * one.count("\n")  # in the third document

    (tmp_path / "all.yaml").write_text(one + "---\n" + one.replace("name: team-a", "name: team-b", 1))
    assert [p.name for p in load_policies([tmp_path])[0]] == ["team-a", "team-b"]


@pytest.mark.parametrize(("rate", "problem"), [
    ("0/s", "0/s is never a token (to refuse everything a rule covers, give it maxInflight: 0)"),
    ("-5/s", "-5/s: a rate cannot be negative"),
    ("5/0s", "5/0s: the period must be longer than 0"),
    ("20/q", '"20/q" is not a rate like 20/s, 3000/m'),
])
def test_a_rate_that_cannot_be_is_named_for_what_it_is(tmp_path: Path, rate: str, problem: str) -> None:
    text = (FIXTURES.parent.parent.parent / "policies" / "team-a.yaml").read_text()
    _, problems = load_text(text.replace("rate: 20/s", f"rate: {rate}"), "p.yaml")
    assert any(p.endswith(f"spec.rules[0].quota.rate: {problem}") for p in problems), problems


def test_validating_an_empty_directory_fails(tmp_path: Path) -> None:
    """A directory with no policy file is a typo or a missing mount, not a pass: exit 1, one line."""
    done = subprocess.run([sys.executable, "-m", "guard", "policy", "validate", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.strip() == (
        f"no TenantPolicy in {tmp_path} (files ending .yaml or .yml)")
