"""TenantPolicy's JSON Schema and CRD agree with `guard policy validate`: the example policies are
valid under both, every field the schema names is one the validator accepts, and a field the
validator does not know is refused by the schema too. The checked-in copies are the generated ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema as validator_lib
import pytest
import yaml

from guard.policy import jsonschema
from guard.policy.loading import load_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "policies").glob("*.yaml"))


def _documents(path: Path) -> list[Any]:
    documents = yaml.safe_load_all(path.read_text())
    return [d for d in documents if d is not None and d.get("kind") == "TenantPolicy"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_policy_is_valid_under_the_schema_and_the_crd(path: Path) -> None:
    crd_schema = jsonschema.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for document in _documents(path):
        validator_lib.validate(document, jsonschema.json_schema())
        validator_lib.Draft202012Validator(crd_schema).validate(document)


def _every_field(node: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every property path the schema declares (arrays walked through their items)."""
    found = []
    for name, sub in node.get("properties", {}).items():
        found.append((*path, name))
        found += _every_field(sub.get("items", sub), (*path, name))
    return found


def test_the_validator_knows_every_field_the_schema_names() -> None:
    """For each field path, the validator's problems never say that field is unknown."""
    schema = jsonschema.json_schema()
    for path in _every_field(schema):
        doc: dict[str, Any] = {"apiVersion": "guard.io/v1alpha1", "kind": "TenantPolicy",
                               "metadata": {"name": "t"},
                               "spec": {"subjects": [{"kind": "User", "name": "u"}],
                                        "rules": [{"name": "r"}]}}
        node: Any = doc
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if isinstance(node, list):
                node = node[0]
        if isinstance(node, dict):
            node.setdefault(path[-1], None)
        _, problems = load_text(yaml.safe_dump(doc), "p.yaml")
        assert not [p for p in problems if "unknown field" in p and path[-1] in p], (path, problems)


@pytest.mark.parametrize(("where", "field"), [
    ((), "spek"), (("spec",), "rulez"), (("spec", "rules", 0), "qouta"),
    (("spec", "rules", 0, "quota"), "rtae"),
])
def test_a_misspelled_field_is_refused_by_both(where: tuple[Any, ...], field: str) -> None:
    doc: dict[str, Any] = {"apiVersion": "guard.io/v1alpha1", "kind": "TenantPolicy",
                           "metadata": {"name": "t"}, "spec": {"subjects": [{"kind": "User", "name": "u"}],
                                    "rules": [{"name": "r", "quota": {"rate": "1/s"}}]}}
    node: Any = doc
    for part in where:
        node = node[part]
    node[field] = 1
    with pytest.raises(validator_lib.ValidationError):
        validator_lib.validate(doc, jsonschema.json_schema())
    _, problems = load_text(yaml.safe_dump(doc), "p.yaml")
    assert any("unknown field" in p for p in problems)


def test_the_checked_in_schema_and_crd_are_the_generated_ones() -> None:
    """docs/schemas/tenantpolicy.json and manifests/crd/tenantpolicy.yaml: regenerate with
    `guard policy schema > ...` and `guard policy schema --crd > ...`."""
    def run(*extra: str) -> str:
        return subprocess.run([sys.executable, "-m", "guard", "policy", "schema", *extra],
                              capture_output=True, text=True, check=True).stdout
    assert json.loads(run()) == json.loads((ROOT / "docs/schemas/tenantpolicy.json").read_text())
    crd = (ROOT / "manifests/crd/tenantpolicy.yaml").read_text()
    assert yaml.safe_load(run("--crd")) == yaml.safe_load(crd)
