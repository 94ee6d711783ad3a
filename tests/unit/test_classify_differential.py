"""guard's classification against the api-server's rules on a corpus of odd requests (issue 13, item 3).

Each row holds a method, a raw request target as a client might send it, and the RequestInfo the
api-server derives — encoded by hand from its Go code (requestinfo.go, net/url, the list options'
conversions, fields.ParseSelector) — for the target guard sends it, or 400 where guard refuses the
target. guard's verdict must equal the row; the Go port in tests/apiserver_requestinfo.py must agree
with the row too (so the oracle the fuzzing leans on is checked against the hand reading); and the
simulator's own classifier (chaos/sim/paths.py, read only) is run over the same rows, its
disagreements reported as a warning rather than failed, since it is another team's module.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from yarl import URL

from guard.kube.canonical import canonical
from guard.kube.errors import BadRequest
from guard.kube.requestinfo import classify
from tests.apiserver_requestinfo import Info, read

CONNECT = {"exec", "attach", "portforward", "proxy"}
"""Subresources guard names `connect` (priced as long-running) where the api-server says get/create."""


def pods(verb: str, ns: str = "", name: str = "", sub: str = "") -> Info:
    return Info(True, verb, "", "v1", ns, "pods", sub, name)


CORPUS: list[tuple[str, str, Info | int]] = [
    # Empty segments: merged, and sent upstream merged.
    ("GET", "/api//v1/pods", pods("list")),
    ("GET", "//api/v1/namespaces/default/pods", pods("list", "default")),
    ("GET", "/api/v1/namespaces//default/pods", pods("list", "default")),
    ("GET", "/apis/apps//v1/deployments", Info(True, "list", "apps", "v1", "", "deployments")),
    ("GET", "/api/v1/namespaces/default/pods//web", pods("get", "default", "web")),
    ("DELETE", "/api/v1/namespaces/default/pods//", pods("deletecollection", "default")),
    # Trailing slashes: splitPath trims them.
    ("GET", "/api/v1/pods/", pods("list")),
    ("GET", "/api/v1/namespaces/default/pods/web/", pods("get", "default", "web")),
    # Dot segments, plain or encoded: refused.
    ("GET", "/api/v1/namespaces/default/pods/.", 400),
    ("GET", "/api/v1/namespaces/default/pods/web/..", 400),
    ("GET", "/api/v1/namespaces/default/pods/x/../", 400),
    ("GET", "/api/v1/namespaces/default/pods/%2e%2e", 400),
    ("GET", "/api/v1/namespaces/default/pods/%2E", 400),
    ("GET", "/api/./v1/pods", 400),
    # Percent-encoding: the api-server reads the decoded path, %2F included.
    ("GET", "/api/v1/namespaces/default/%70ods", pods("list", "default")),
    ("GET", "/api/v1/namespaces%2Fdefault%2Fpods", pods("list", "default")),
    ("GET", "/api/v1/namespaces/default/pods/web%2Flog", pods("get", "default", "web", "log")),
    ("GET", "/api/v1/namespaces/default/pods/web%2F%2Flog", pods("get", "default", "web", "log")),
    ("GET", "/api/v1/namespaces/default/pods/%zz", 400),
    ("GET", "/api/v1/namespaces/default/pods/web%", 400),
    ("GET", "/api/v1/namespaces/default/pods/a%00b", pods("get", "default", "a\x00b")),
    ("GET", "/API/v1/pods", Info(False, "get")),
    # watch=: anything but 0/false (any case) is a watch; the first value wins.
    ("GET", "/api/v1/pods?watch", pods("watch")),
    ("GET", "/api/v1/pods?watch=", pods("watch")),
    ("GET", "/api/v1/pods?watch=yes", pods("watch")),
    ("GET", "/api/v1/pods?watch=tRuE", pods("watch")),
    ("GET", "/api/v1/pods?watch=%74rue", pods("watch")),
    ("GET", "/api/v1/pods?watch=+false", pods("watch")),
    ("GET", "/api/v1/pods?watch=FALSE", pods("list")),
    ("GET", "/api/v1/pods?watch=f%61lse", pods("list")),
    ("GET", "/api/v1/pods?watch=0", pods("list")),
    ("GET", "/api/v1/pods?watch=00", pods("watch")),
    ("GET", "/api/v1/pods?watch=false&watch=true", pods("list")),
    ("GET", "/api/v1/pods?watch=true&watch=false", pods("watch")),
    ("GET", "/api/v1/pods?a=1;watch=1", pods("list")),
    ("GET", "/api/v1/pods?watch=%zz", pods("list")),
    ("GET", "/api/v1/pods?WATCH=true", pods("list")),
    ("GET", "/api/v1/pods?&&watch=1&&", pods("watch")),
    ("HEAD", "/api/v1/pods?watch=1", pods("watch")),
    # U+017F (long s) folds to s: EqualFold says false when the list options parse, ToLower says not.
    ("GET", "/api/v1/pods?watch=fal%C5%BFe", pods("list")),
    ("GET", "/api/v1/pods?watch=fal%C5%BFe&limit=x", pods("watch")),
    ("GET", "/api/v1/pods?watch=false&limit=x", pods("list")),
    ("GET", "/api/v1/pods?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan", pods("watch")),
    # A name in the path wins; ?watch= on a named object is a get.
    ("GET", "/api/v1/namespaces/default/pods/web?watch=true", pods("get", "default", "web")),
    ("GET", "/api/v1/watch/namespaces/default/pods/web", pods("watch", "default", "web")),
    ("GET", "/api/v1/watch/pods", pods("watch")),
    # fieldSelector=metadata.name=x names the object, when the list options parse.
    ("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dweb",
     pods("list", "default", "web")),
    ("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3D%3Dweb",
     pods("list", "default", "web")),
    ("GET", "/api/v1/pods?fieldSelector=metadata.name%3Dweb&watch=1", pods("watch", "", "web")),
    ("GET", "/api/v1/pods?fieldSelector=metadata.name!%3Dweb", pods("list")),
    ("GET", "/api/v1/pods?fieldSelector=metadata.name%3Dweb&limit=x", pods("list")),
    ("GET", "/api/v1/pods?fieldSelector=metadata.name%3Dweb&limit=", pods("list")),
    ("GET", "/api/v1/pods?fieldSelector=metadata.name%3Dweb&timeoutSeconds=", pods("list", "", "web")),
    ("GET", "/api/v1/pods?fieldSelector=metadata.name%3D..", pods("list")),
    ("GET", "/api/v1/pods?fieldSelector=metadata.name%3Da%25b", pods("list")),
    ("GET", "/api/v1/pods?fieldSelector=metadata.name%20%3Dweb", pods("list")),
    ("GET", "/api/v1/pods?fieldSelector=metadata.name%3Db,metadata.name%3Da", pods("list", "", "a")),
    ("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn,metadata.name%3Dw", pods("list", "", "w")),
    ("GET", "/api/v1/pods?fieldSelector=metadata.name%3Da%5C%2Cb", pods("list", "", "a,b")),
    ("GET", "/api/v1/pods?fieldSelector=metadata.name%3Da%5Cb", pods("list")),
    ("GET", "/api/v1/pods?fieldSelector=bogus", pods("list")),
    ("GET", "/api/v1/pods?fieldSelector=metadata.name%3Dweb&fieldSelector=x", pods("list", "", "web")),
    # Special verbs, namespace subresources, other methods.
    ("GET", "/api/v1/proxy/namespaces/default/pods/web/metrics", pods("proxy", "default", "web")),
    ("GET", "/api/v1/namespaces/team-a/status",
     Info(True, "get", "", "v1", "team-a", "namespaces", "status", "team-a")),
    ("GET", "/api/v1/namespaces/team-a", Info(True, "get", "", "v1", "team-a", "namespaces", "", "team-a")),
    ("HEAD", "/api/v1/pods", pods("list")),
    ("OPTIONS", "/api/v1/pods", pods("")),
    ("POST", "/api/v1/namespaces/default/pods/web/exec?command=ls", pods("create", "default", "web", "exec")),
    ("GET", "/apis/apps/v1/namespaces/prod/deployments/api/scale",
     Info(True, "get", "apps", "v1", "prod", "deployments", "scale", "api")),
    ("GET", "/apis/apps/v1", Info(False, "get")),
    ("GET", "/healthz//etcd", Info(False, "get")),
]


def guard_reads(method: str, raw: str) -> tuple[Info | int, str]:
    """guard's verdict on a target: its RequestInfo as the oracle's Info (or 400), and what it sends."""
    try:
        target = canonical(raw)
    except BadRequest:
        return 400, ""
    info = classify(method, target.path, target.params)
    verb = info.verb
    return Info(info.is_resource_request, verb, info.api_group, info.api_version, info.namespace,
                info.resource, info.subresource, info.name), target.forward


def as_guard(expected: Info) -> Info:
    """The api-server's RequestInfo with guard's one deliberate difference: `connect`."""
    if expected.resource_request and expected.subresource in CONNECT and expected.verb != "proxy":
        return Info(**{**expected.__dict__, "verb": "connect"})
    return expected


@pytest.mark.parametrize(("method", "raw", "expected"), CORPUS)
def test_guard_classifies_as_the_api_server_reads_what_guard_sends(
        method: str, raw: str, expected: Info | int) -> None:
    """guard's RequestInfo equals the api-server's for the target guard forwards (or guard refuses)."""
    got, forward = guard_reads(method, raw)
    assert got == (expected if isinstance(expected, int) else as_guard(expected))
    if forward:
        assert read(method, forward) == expected, "the Go port disagrees with the hand-encoded row"
        assert canonical(forward).forward == forward, "the forwarded form is not canonical"


def _short(info: Info) -> str:
    if not info.resource_request:
        return f"non-resource {info.verb}"
    fields = (info.group, info.version, info.namespace, info.resource, info.subresource, info.name)
    return f"{info.verb or '-'} " + "/".join(f or "-" for f in fields)


def _simulator_reads(method: str, forward: str) -> Any:
    paths = pytest.importorskip("chaos.sim.paths")
    url = URL(forward, encoded=True)
    return paths.parse(method, url.path, url.query)


def test_the_simulators_classifier_is_compared_on_the_same_corpus() -> None:
    """chaos/sim/paths.py reads each forwarded target; where it disagrees with the api-server's
    reading the rows are reported (a warning), for the simulator's owners to judge."""
    disagreements = []
    for method, raw, expected in CORPUS:
        if isinstance(expected, int):
            continue
        _, forward = guard_reads(method, raw)
        try:
            sim = _simulator_reads(method, forward)
            found = Info(sim.resource_request, sim.verb, sim.group, sim.version, sim.namespace,
                         sim.resource, sim.subresource, sim.name)
        except Exception as e:  # the simulator's module is read-only to us: report, never fail
            found = f"raised {type(e).__name__}"  # type: ignore[assignment]
        if found != expected:
            disagreements.append(f"{method} {raw}: api-server {_short(expected)}, simulator "
                                 f"{_short(found) if isinstance(found, Info) else found}")
    if disagreements:
        warnings.warn("chaos/sim/paths.py disagrees with the api-server on "
                      f"{len(disagreements)} of {len(CORPUS)} rows:\n  " + "\n  ".join(disagreements),
                      stacklevel=1)
    assert len(disagreements) < len(CORPUS)  # the comparison ran
