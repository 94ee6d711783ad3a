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


@pytest.mark.parametrize(
    "selector", ["spec.nodeName=x", "metadata.name", "status.phase!=Running", "spec.x=1"]
)
def test_unsupported_field_selectors_are_errors(selector: str) -> None:
    """Fields a kind does not support are rejected (ConfigMaps: only metadata.name/namespace)."""
    with pytest.raises(SelectorError):
        parse_fields(selector, "ConfigMap")


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("status.phase=Running", True),
        ("status.phase!=Running", False),
        ("spec.nodeName=sim-worker,status.podIP=10.244.1.7", True),
        ("spec.restartPolicy=Never", False),
        ("spec.hostNetwork=false", True),
        ("status.podIPs=10.244.1.7", True),
        ("metadata.name=web-1,", True),
        (",metadata.name=web-2", False),
    ],
)
def test_pod_field_selectors_and_empty_terms(selector: str, expected: bool) -> None:
    """Pods support the api-server's pod field labels; empty terms are skipped, not errors."""
    pod = {
        **POD,
        "spec": {"nodeName": "sim-worker", "restartPolicy": "Always"},
        "status": {"phase": "Running", "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}]},
    }
    assert matches(pod, (), parse_fields(selector, "Pod")) is expected


def test_event_field_selectors() -> None:
    """Events select on involvedObject.*, reason and type."""
    event = {
        "metadata": {"name": "e"},
        "involvedObject": {"kind": "Pod", "name": "web-1"},
        "reason": "Started",
        "type": "Normal",
    }
    assert matches(
        event, (), parse_fields("involvedObject.kind=Pod,involvedObject.name=web-1,type=Normal", "Event")
    )
    assert not matches(event, (), parse_fields("reason=Killing", "Event"))
