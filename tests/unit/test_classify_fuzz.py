"""Properties of request classification under odd targets (issue 13, items 3 and 8): it never
raises (a target guard will not read is a 400), its canonical form is a fixed point, it agrees with
the Go port of the api-server's reading of what guard sends, and get/list/watch stay consistent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.kube.canonical import canonical
from guard.kube.errors import BadRequest
from guard.kube.requestinfo import classify
from tests.apiserver_requestinfo import Refused, read
from tests.fuzzing import FUZZ
from tests.unit.test_classify_differential import as_guard, guard_reads

pytestmark = pytest.mark.fuzz

SEGMENTS = ["api", "apis", "v1", "apps", "namespaces", "default", "pods", "watch", "proxy", "status",
            "finalize", "exec", "log", "scale", ".", "..", "%2e", "%2E%2e", "%2F", "", "web", "%70ods",
            "%zz", "%", "a%00b", "na%2Fme", "%C5%BF", "API", "x y", "+"]
KEYS = ["watch", "limit", "fieldSelector", "timeoutSeconds", "sendInitialEvents", "resourceVersion",
        "resourceVersionMatch", "continue", "WATCH", "labelSelector", "wat%63h", ""]
VALUES = ["", "0", "00", "false", "FALSE", "true", "tRuE", "yes", "x", "5", "-1", "metadata.name%3Dweb",
          "metadata.name%3D..", "metadata.name!%3Dw", "bogus", "%zz", "+false", "fal%C5%BFe", "a;b"]
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get"])


@st.composite
def targets(draw: st.DrawFn) -> str:
    path = "/".join(draw(st.lists(st.sampled_from(SEGMENTS), max_size=9)))
    lead = draw(st.sampled_from(["/", "//", "/./", "/%2F"]))
    tail = draw(st.sampled_from(["", "/", "//"]))
    pairs = draw(st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES),
                                    st.sampled_from(["=", "", "=="])), max_size=5))
    query = "&".join(k + sep + v for k, v, sep in pairs)
    return lead + path + tail + ("?" + query if pairs or draw(st.booleans()) else "")


ANY_TARGETS = st.one_of(targets(), st.text(max_size=60).map(lambda t: "/" + t))


@FUZZ
@given(method=METHODS, raw=ANY_TARGETS)
def test_classification_never_raises_and_its_canonical_form_is_a_fixed_point(method: str, raw: str) -> None:
    """Any target is classified or refused with BadRequest; canonicalising what guard forwards
    changes nothing and classifies the same."""
    try:
        target = canonical(raw)
    except BadRequest:
        return
    info = classify(method, target.path, target.params)
    again = canonical(target.forward)
    assert (again.path, again.forward, again.changed) == (target.path, target.forward, False)
    assert classify(method, again.path, again.params) == info


@FUZZ
@given(method=METHODS, raw=targets())
def test_guard_agrees_with_the_api_server_on_what_guard_sends(method: str, raw: str) -> None:
    """The Go port of the api-server's reading of the forwarded target gives guard's RequestInfo."""
    got, forward = guard_reads(method, raw)
    if got == 400:
        return
    try:
        expected = read(method, forward)
    except Refused:  # /api/v1/watch: the api-server's RequestInfo filter answers 500 itself
        assert not getattr(got, "resource_request", True)
        return
    assert got == as_guard(expected)


@FUZZ
@given(method=st.sampled_from(["GET", "HEAD"]), raw=targets())
def test_reads_are_get_list_or_watch_consistently(method: str, raw: str) -> None:
    """A read names an object when it is a get, names none (but a selected one) when a list, and is a
    watch exactly when the path's watch verb or a true `watch=` asks for one."""
    try:
        target = canonical(raw)
    except BadRequest:
        return
    info = classify(method, target.path, target.params)
    if not info.is_resource_request or info.verb in ("proxy", "connect"):
        return
    assert info.verb in ("get", "list", "watch")
    if info.verb == "get":
        assert info.name
    selected = "metadata.name" in target.params.get("fieldSelector", "")
    if info.verb == "list":
        assert not info.name or selected
    if info.verb == "watch" and "/watch/" not in target.path:
        assert target.params.get("watch") is not None and (not info.name or selected)
