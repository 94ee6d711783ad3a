"""Scenario files are validated whole: every shipped one loads, each mistake is named by file and field."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos import scenario
from chaos.scenario_parse import parse
from chaos.verdict import judge, metric, summarize
from chaos.workload import Second

MINIMAL: dict[str, Any] = {
    "name": "tiny",
    "duration": 10,
    "clients": [{"name": "steady", "role": "well-behaved", "rate": 2, "mix": [{"path": "/api/v1/pods"}]}],
    "verdict": {"guard": {"all": [{"metric": "success", "client": "steady", "op": ">=", "value": 0.99}]}},
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    doc = yaml.safe_load(yaml.safe_dump(MINIMAL))
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[last] = value
    return doc


@pytest.mark.parametrize("name", scenario.available())
def test_every_shipped_scenario_loads(name: str) -> None:
    """Each file in chaos/scenarios parses and names at least one verdict check."""
    s = scenario.load(name)
    assert s.name == name
    assert any(v.checks for v in s.verdicts.values())


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("durations", 5, "durations: unknown key"),
        ("clients.0.rat", 5, "clients[0].rat: unknown key"),
        ("clients.0.rate", -1, "clients[0].rate: must be a number"),
        ("clients.0.role", "evil", "clients[0].role: must be one of"),
        ("cluster", {"replica": 2}, "cluster.replica: unknown key"),
        ("guard", {"store": "etcd"}, "guard.store: must be one of"),
        ("faults", [{"at": 1, "action": "explode", "target": "sim"}], "faults[0].action: must be one of"),
        (
            "verdict",
            {"guard": {"all": [{"metric": "succes", "op": ">=", "value": 1}]}},
            "metric: must be one of",
        ),
        (
            "verdict",
            {"guard": {"all": [{"metric": "success", "client": "nobody", "op": ">=", "value": 1}]}},
            "no client class 'nobody'",
        ),
        ("faults", [{"at": 1, "action": "proxy", "target": "redis-proxy"}], "needs guard.redisProxy"),
    ],
)
def test_mistakes_are_errors_naming_file_and_field(path: str, value: Any, message: str) -> None:
    """A typo or bad value is an error with the file name and field path, never silently ignored."""
    with pytest.raises(scenario.ScenarioError) as caught:
        parse(with_change(path, value), source="tiny.yaml")
    assert "tiny.yaml: " in str(caught.value)
    assert message in str(caught.value)


def test_all_errors_are_reported_at_once() -> None:
    """Two independent mistakes both appear in the one error."""
    doc = with_change("clients.0.rat", 5)
    doc["durations"] = 1
    with pytest.raises(scenario.ScenarioError) as caught:
        parse(doc, source="tiny.yaml")
    assert len(str(caught.value).splitlines()) == 2


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    """A missing scenario file is one clear error naming it."""
    with pytest.raises(scenario.ScenarioError, match=r"missing\.yaml: cannot read"):
        scenario.load(str(tmp_path / "missing.yaml"))


def test_short_keeps_faults_in_proportion() -> None:
    """--short squeezes the run and moves faults to the same fraction of it."""
    doc = with_change("faults", [{"at": 30, "action": "kill", "target": "sim"}])
    doc["duration"] = 60
    s = parse(doc).shortened(duration_s=12)
    assert s.duration_s == 12
    assert s.faults[0].at_s == pytest.approx(6)


def test_verdict_any_passes_on_one_check_and_all_needs_every_check() -> None:
    """`any` passes when one check holds; `all` fails when one does not."""
    doc = with_change(
        "verdict",
        {
            "direct": {
                "any": [
                    {"metric": "crashes", "op": ">=", "value": 1},
                    {"metric": "success", "client": "steady", "op": "<", "value": 0.9},
                ]
            },
            "guard": {
                "all": [
                    {"metric": "crashes", "op": "==", "value": 0},
                    {"metric": "p99_ratio", "client": "steady", "op": "<=", "value": 1.5},
                ]
            },
        },
    )
    s = parse(doc)
    ok = Second(requests=10, ok=10, latencies_ms=[10.0] * 10)
    slow = Second(requests=10, ok=10, latencies_ms=[30.0] * 10)
    direct = {"crashes": 2, "flood": {"steady": summarize([ok])}}
    guard = {"crashes": 0, "flood": {"steady": summarize([slow])}, "baseline": {"steady": summarize([ok])}}
    result = judge(s, {"direct": direct, "guard": guard})
    assert result["runs"]["direct"]["passed"] is True
    assert result["runs"]["guard"]["passed"] is False
    assert metric(s.verdicts["guard"].checks[1], guard) == 3.0
    assert result["passed"] is False
