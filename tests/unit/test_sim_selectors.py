"""Label and field selectors parse and match with the api-server's syntax; bad ones are errors."""

from __future__ import annotations

import pytest

from chaos.sim.selectors import SelectorError, matches, parse_fields, parse_labels

POD = {"metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web", "tier": "front"}}}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("app in (web,db)", True),
        ("app in (db)", False),
        ("app notin (db)", True),
        ("app notin (web)", False),
        ("tier", True),
        ("zone", False),
        ("!zone", True),
        ("!tier", False),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("zone!=x", True),
        ("app in (web, db),!zone", True),
        ("", True),
    ],
)
def test_label_selector_matches(selector: str, expected: bool) -> None:
    """Each operator matches as the api-server's labels.Selector does."""
    assert matches(POD, parse_labels(selector), ()) is expected


@pytest.mark.parametrize("selector", ["app in (web", "=web", "a b=c", "app=we b", "app=-x-", ","])
def test_invalid_label_selectors_are_errors(selector: str) -> None:
    """A malformed selector raises instead of matching everything."""
    with pytest.raises(SelectorError):
        parse_labels(selector)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("metadata.name=web-1", True),
        ("metadata.name==web-2", False),
        ("metadata.name!=web-2", True),
        ("metadata.namespace=shop", True),
        ("metadata.namespace=shop,metadata.name=web-2", False),
    ],
)
def test_field_selector_matches(selector: str, expected: bool) -> None:
    """Field selectors on metadata.name and metadata.namespace."""
    assert matches(POD, (), parse_fields(selector)) is expected


@pytest.mark.parametrize("selector", ["spec.nodeName=x", "metadata.name", "status.phase!=Running"])
def test_unsupported_field_selectors_are_errors(selector: str) -> None:
    """Fields other than metadata.name/namespace are rejected, like the api-server does for most kinds."""
    with pytest.raises(SelectorError):
        parse_fields(selector)
