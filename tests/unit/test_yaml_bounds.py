"""YAML alias bombs and oversized documents (issue 13, item 7): policy files, guard.yaml and signed
bundles are refused with a problem naming the file, at once, instead of being walked for minutes;
ordinary anchors and aliases still work."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard import settings as settings_module
from guard.config import yamlbounds
from guard.federation.bundles import Bundle, bundle_policies
from guard.kube.errors import ConfigError
from guard.policy.loading import MAX_BYTES, load_policies, load_text
from tests.yaml_bombs import POLICY_HEAD, bomb


@pytest.mark.timeout(30)
def test_an_alias_bomb_in_a_policy_is_refused_before_it_is_walked() -> None:
    """387 million nodes through aliases: one problem naming the file; the walk never starts."""
    policies, problems = load_text(POLICY_HEAD + "bomb:\n  " + bomb().replace("\n", "\n  "), "bomb.yaml")
    assert policies == []
    assert problems == ["bomb.yaml: refused: expands to more than 100000 nodes through its aliases"]


@pytest.mark.timeout(30)
def test_a_self_referencing_alias_is_refused() -> None:
    """An anchor inside its own value would expand forever."""
    _, problems = load_text(POLICY_HEAD + "loop: &l [a, *l]\n", "loop.yaml")
    assert problems and "expands to more than" in problems[0]


def test_ordinary_anchors_and_aliases_still_work() -> None:
    """A quota shared by two rules through an anchor loads as if written twice."""
    text = POLICY_HEAD.replace("  rules: [{name: r}]\n", "") + (
        "  rules:\n"
        "    - {name: a, quota: &q {rate: 5/s, burst: 10}}\n"
        "    - {name: b, quota: *q}\n")
    (policy,), problems = load_text(text, "anchors.yaml")
    assert problems == []
    assert policy.rules[0].quota == policy.rules[1].quota


def test_an_oversized_policy_file_is_refused_unread(tmp_path: Path) -> None:
    """A policy file larger than 256 KiB is a problem naming it."""
    (tmp_path / "big.yaml").write_text(POLICY_HEAD + "# " + "x" * MAX_BYTES + "\n")
    _, problems = load_policies([tmp_path])
    assert len(problems) == 1 and "big.yaml: refused: larger than" in problems[0]


@pytest.mark.timeout(30)
def test_an_alias_bomb_in_guard_yaml_is_refused(tmp_path: Path) -> None:
    """guard.yaml: a ConfigError naming the file."""
    path = tmp_path / "guard.yaml"
    path.write_text("listen: 127.0.0.1:0\nclusters: [{name: dev, server: 'http://a:1'}]\nx:\n  "
                    + bomb().replace("\n", "\n  "))
    with pytest.raises(ConfigError) as raised:
        settings_module.load(path)
    expected = f"{path}: refused: expands to more than 100000 nodes through its aliases"
    assert raised.value.problems == [expected]


@pytest.mark.timeout(30)
def test_an_alias_bomb_in_a_signed_bundle_is_refused() -> None:
    """A bundle file is bounded like a policy file: the bundle is refused, naming the file."""
    bundle = Bundle(3, {"t.yaml": POLICY_HEAD + "bomb:\n  " + bomb().replace("\n", "\n  ")})
    policies, problems = bundle_policies(bundle)
    assert policies == [] and problems == ["bundle v3/t.yaml: refused: expands to more than 100000 nodes "
                                           "through its aliases"]


def test_expanded_size_counts_each_use_of_an_alias() -> None:
    """`[*a, *a]` with `a` three nodes is 1 + 3 + 3 ... counted without expanding."""
    nodes = yamlbounds.compose("a: &a [1, 2]\nb: [*a, *a]\n")
    assert yamlbounds.expanded_size(nodes[0], {}, 1000) == 1 + (1 + 3) + (1 + 1 + 3 + 3)
