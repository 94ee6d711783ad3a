"""Properties of policy loading (issue 13, item 8): it never raises, whatever the bytes; every problem
names the file and, for a field gone wrong, the field; and a valid policy written out as YAML loads
back as the same policy."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from guard.config.paths import dotted
from guard.policy import model
from guard.policy.loading import load_text
from guard.policy.model import ListCost, Quota, Rule, Selector, Subject, TenantPolicy
from tests.fuzzing import FUZZ

pytestmark = pytest.mark.fuzz
SOURCE = "fuzz.yaml"
NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
WORDS = st.sampled_from(["get", "list", "watch", "create", "*", "pods", "pods/log", "", "apps", "team-*",
                         "system:masters", "5/s", "3000/m", "fast", "-1", "yes"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False), WORDS,
                    st.text(max_size=12))
JUNK = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.one_of(WORDS, st.text(max_size=8)),
                                                                     inner, max_size=4)), max_leaves=12)
VALID = {
    "apiVersion": model.API_VERSION, "kind": model.KIND, "metadata": {"name": "team-a"},
    "spec": {"subjects": [{"kind": "Group", "name": "team-a"}],
             "rules": [{"name": "reads", "verbs": ["get", "list"], "resources": ["pods"],
                        "quota": {"rate": "20/s", "burst": 40, "scope": "tenant"},
                        "cost": {"list": {"base": 1, "perObjects": 100, "max": 10}}, "maxInflight": 5}],
             "quarantine": {"threshold": 10, "window": "1m", "ttl": "5m"}},
}


def paths(doc: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path into `doc` (mappings and lists), the root excluded."""
    found: list[tuple[str | int, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for key, value in items:
        found.append((*prefix, key))
        found.extend(paths(value, (*prefix, key)))
    return found


def mutate(doc: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """A copy of `doc` with the value at `path` replaced, added, or (DELETE) removed."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        copy = dict(doc)
        if not rest and value is DELETE:
            copy.pop(head, None)
        else:
            copy[head] = mutate(doc.get(head), rest, value)
        return copy
    copy_list = list(doc)
    copy_list[head] = mutate(doc[head], rest, value)  # type: ignore[index]
    return copy_list


DELETE = object()


@FUZZ
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                      JUNK.map(lambda d: yaml.safe_dump(d))))
def test_loading_never_raises_and_every_problem_names_the_file(text: str) -> None:
    """Arbitrary text or YAML: a policy or problems, each naming the file, never an exception."""
    policies, problems = load_text(text, SOURCE)
    assert (not policies) == bool(problems)
    assert all(p.startswith(SOURCE) for p in problems)


@FUZZ
@given(data=st.data())
def test_a_broken_field_is_named_in_a_problem(data: st.DataObject) -> None:
    """One field of a valid policy replaced by junk, or removed, or an unknown key added: either it
    still loads, or a problem names that field or one enclosing it."""
    choices = paths(VALID)
    path = data.draw(st.sampled_from(choices))
    action = data.draw(st.sampled_from(["replace", "delete", "unknown"]))
    if action == "unknown" and isinstance(_at(VALID, path), dict):
        doc = mutate(VALID, (*path, "misspeled"), data.draw(SCALARS))
        path = (*path, "misspeled")
    elif action == "delete" and isinstance(path[-1], str):
        doc = mutate(VALID, path, DELETE)
    else:
        doc = mutate(VALID, path, data.draw(JUNK))
    _, problems = load_text(yaml.safe_dump(doc), SOURCE)
    assert all(p.startswith(SOURCE + ":") for p in problems)
    if problems:
        named = [dotted(path[:n]) for n in range(len(path), 0, -1)]
        assert any(f" {field}:" in p or f" {field}[" in p or f" {field}." in p for p in problems
                   for field in named), problems


def _at(doc: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


# --- valid policies, generated as values, written out, loaded back ---------------------------------

SUBJECTS = st.one_of(
    st.builds(Subject, st.sampled_from(["User", "Group"]), NAMES),
    st.builds(Subject, st.just("ServiceAccount"), st.one_of(NAMES, st.just("*")), NAMES),
)
PATTERNS = st.lists(st.one_of(NAMES, st.just("*")), min_size=1, max_size=3).map(tuple)
SELECTORS = st.builds(Selector, verbs=st.one_of(st.none(), st.lists(st.sampled_from(model.RESOURCE_VERBS),
                                                                    min_size=1, max_size=3).map(tuple)),
                      api_groups=st.one_of(st.none(), PATTERNS), resources=st.one_of(st.none(), PATTERNS),
                      namespaces=st.one_of(st.none(), PATTERNS))
QUOTAS = st.builds(Quota, st.integers(1, 1000).map(float), st.integers(1, 5000).map(float),
                   st.sampled_from(model.SCOPES), st.sampled_from(model.FAIL_MODES))
COSTS = st.builds(ListCost, st.integers(0, 5).map(float), st.integers(1, 500).map(float),
                  st.integers(1, 20).map(float), st.integers(0, 5000))
RULES = st.builds(Rule, name=NAMES, selector=SELECTORS, quota=st.one_of(st.none(), QUOTAS), list_cost=COSTS,
                  max_inflight=st.one_of(st.none(), st.integers(0, 100)),
                  max_watches=st.one_of(st.none(), st.integers(0, 100)), shadow=st.booleans())
POLICIES = st.builds(TenantPolicy, name=NAMES,
                     subjects=st.lists(SUBJECTS, min_size=1, max_size=4).map(tuple),
                     rules=st.lists(RULES, min_size=1, max_size=4, unique_by=lambda r: r.name).map(tuple),
                     namespaces=st.lists(NAMES, max_size=2).map(tuple), precedence=st.integers(0, 5000))


def document(policy: TenantPolicy) -> dict[str, Any]:
    """`policy` as the YAML document a person would write."""
    return {"apiVersion": model.API_VERSION, "kind": model.KIND, "metadata": {"name": policy.name},
            "spec": {"subjects": [_subject(s) for s in policy.subjects],
                     "namespaces": list(policy.namespaces), "precedence": policy.precedence,
                     "rules": [_rule(r) for r in policy.rules]}}


def _subject(s: Subject) -> dict[str, str]:
    extra = {"namespace": s.namespace} if s.kind == "ServiceAccount" else {}
    return {"kind": s.kind, "name": s.name, **extra}


def _rule(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rule.name, "shadow": rule.shadow}
    keys = {"verbs": rule.selector.verbs, "apiGroups": rule.selector.api_groups,
            "resources": rule.selector.resources, "namespaces": rule.selector.namespaces}
    out.update({k: list(v) for k, v in keys.items() if v is not None})
    if rule.quota is not None:
        q = rule.quota
        out["quota"] = {"rate": f"{int(q.rate)}/s", "burst": q.burst, "scope": q.scope,
                        "failMode": q.fail_mode}
    c = rule.list_cost
    out["cost"] = {"list": {"base": c.base, "perObjects": c.per_objects, "max": c.max,
                            "unmeasured": c.unmeasured}}
    for key, value in (("maxInflight", rule.max_inflight), ("maxWatches", rule.max_watches)):
        if value is not None:
            out[key] = value
    return out


@FUZZ
@given(policy=POLICIES)
def test_a_valid_policy_round_trips(policy: TenantPolicy) -> None:
    """Written out as YAML and loaded back, a valid policy is the same policy."""
    loaded, problems = load_text(yaml.safe_dump(document(policy), sort_keys=False), SOURCE)
    assert problems == []
    assert loaded == [TenantPolicy(**{**policy.__dict__, "source": SOURCE})]
