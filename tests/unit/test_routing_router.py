"""Which cluster a request goes to: the `/clusters/{name}` prefix (stripped), the Host header, the TLS
server name, the default; and how several clusters are written in guard.yaml."""

from __future__ import annotations

import pytest

from guard import settings
from guard.kube.errors import ConfigError
from guard.routing.router import Route, Router, UnknownCluster, normal_host

ROUTER = Router(["prod", "dev", "lab"], default="dev",
                hosts={"prod.example": "prod", "prod.internal": "prod", "lab.example": "lab"})


@pytest.mark.parametrize(("target", "host", "sni", "route"), [
    ("/api/v1/pods", None, None, Route("dev")),
    ("/api/v1/pods", "guard.example:7443", None, Route("dev")),
    ("/clusters/prod/api/v1/namespaces/a/pods?limit=5", None, None,
     Route("prod", "/api/v1/namespaces/a/pods?limit=5")),
    ("/clusters/prod", None, None, Route("prod", "/")),
    ("/clusters/prod/", None, None, Route("prod", "/")),
    ("/clusters/prod?timeout=32s", None, None, Route("prod", "/?timeout=32s")),
    ("/clusters/lab/apis/apps/v1/deployments?watch=true", "prod.example", "prod.example",
     Route("lab", "/apis/apps/v1/deployments?watch=true")),  # the prefix wins over the host
    ("/clustersx/api", "prod.example", None, Route("prod")),  # not the prefix
    ("/api", "prod.example", None, Route("prod")),
    ("/api", "PROD.Example.:7443", None, Route("prod")),
    ("/api", "prod.internal", None, Route("prod")),
    ("/api", "127.0.0.1:7443", "lab.example", Route("lab")),  # no host match: the TLS server name
    ("/api", "prod.example", "lab.example", Route("prod")),  # the Host header first
    ("/api", "[::1]:7443", None, Route("dev")),
    ("/api", "nowhere.example", "nowhere.example", Route("dev")),
])
def test_routes(target: str, host: str | None, sni: str | None, route: Route) -> None:
    """Prefix, then Host, then SNI, then the default; the prefix leaves the target the api-server knows."""
    assert ROUTER.route(target, host, sni) == route


@pytest.mark.parametrize(("target", "message", "name"), [
    ("/clusters/qa/api/v1/pods", 'cluster "qa" is not served here', "qa"),
    ("/clusters/", "no such cluster", ""),
    ("/clusters/../api", "no such cluster", ""),
    ("/clusters/" + "x" * 80 + "/api", "no such cluster", ""),
    ("/clusters/<script>/api", "no such cluster", ""),
])
def test_a_prefix_naming_no_cluster_is_a_404_status(target: str, message: str, name: str) -> None:
    """NotFound naming the cluster when it is a valid name; a client's junk is never echoed."""
    with pytest.raises(UnknownCluster) as caught:
        ROUTER.route(target, "prod.example")
    status = caught.value.status()
    assert (status["code"], status["reason"], status["message"]) == (404, "NotFound", message)
    assert status.get("details", {}).get("name", "") == name


@pytest.mark.parametrize(("host", "normal"), [
    ("A.example", "a.example"), ("a.example:443", "a.example"), ("a.example.", "a.example"),
    ("[::1]:7443", "::1"), ("::1", "::1"), ("", ""), (None, ""),
])
def test_host_names_compare_without_case_port_or_trailing_dot(host: str | None, normal: str) -> None:
    """The Host header's port and case do not matter."""
    assert normal_host(host) == normal


def test_a_router_needs_its_default_among_the_clusters() -> None:
    """A default that is not a cluster is a programming error, caught at build time."""
    with pytest.raises(ValueError):
        Router(["a"], default="b")


def test_several_clusters_parse_with_hosts_default_and_health() -> None:
    """Hosts are lower-cased, `default: true` picks the default (else the first), health has defaults."""
    raw = {"listen": "127.0.0.1:0", "clusters": [
        {"name": "a", "server": "http://a:1", "token": "t"},
        {"name": "b", "servers": ["http://b:1", "http://b:2"], "token": "t",
         "hosts": ["B.example", "b.internal."],
         "default": True, "health": {"checks": True, "checkInterval": 2, "slowStart": 0}},
    ]}
    s = settings.parse(raw, "g.yaml")
    assert [c.name for c in s.clusters] == ["a", "b"] and s.cluster.name == "b"
    b = s.clusters[1]
    assert b.hosts == ("b.example", "b.internal")
    assert (b.health.checks, b.health.check_interval, b.health.slow_start) == (True, 2.0, 0.0)
    assert (b.health.failures, b.health.cool_down) == (3, 5.0)
    del raw["clusters"][1]["default"]  # type: ignore[index, attr-defined]
    assert settings.parse(raw, "g.yaml").cluster.name == "a"


def test_a_cluster_without_its_own_name_is_not_reported_twice() -> None:
    """Two clusters with bad names get one problem each, not an extra 'duplicate name' one."""
    raw = {"listen": "127.0.0.1:0", "clusters": [{"name": "A", "server": "http://a:1", "token": "t"},
                                                 {"name": "B", "server": "http://b:1", "token": "t"}]}
    with pytest.raises(ConfigError) as caught:
        settings.parse(raw, "g.yaml")
    assert len(caught.value.problems) == 2 and all("must match" in p for p in caught.value.problems)
