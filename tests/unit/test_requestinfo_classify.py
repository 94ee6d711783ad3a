"""`classify` reads method + path + query the way the api-server's RequestInfoFactory does."""

from __future__ import annotations

import pytest

from guard.kube.requestinfo import RequestInfo, classify

# method, path, query, expected (verb, group, version, namespace, resource, subresource, name)
ROWS: list[tuple[str, str, dict[str, str], tuple[str, str, str, str, str, str, str]]] = [
    ("GET", "/api/v1/pods", {}, ("list", "", "v1", "", "pods", "", "")),
    ("GET", "/api/v1/namespaces/default/pods", {}, ("list", "", "v1", "default", "pods", "", "")),
    ("GET", "/api/v1/namespaces/default/pods/web", {}, ("get", "", "v1", "default", "pods", "", "web")),
    ("HEAD", "/api/v1/namespaces/default/pods/web", {}, ("get", "", "v1", "default", "pods", "", "web")),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": "true"},
     ("watch", "", "v1", "default", "pods", "", "")),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": "1"},
     ("watch", "", "v1", "default", "pods", "", "")),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": "false"},
     ("list", "", "v1", "default", "pods", "", "")),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": "yes"},
     ("watch", "", "v1", "default", "pods", "", "")),
    ("GET", "/api/v1/watch/namespaces/default/pods", {}, ("watch", "", "v1", "default", "pods", "", "")),
    ("GET", "/api/v1/watch/pods", {}, ("watch", "", "v1", "", "pods", "", "")),
    ("GET", "/api/v1/watch/namespaces/default/pods/web", {},
     ("watch", "", "v1", "default", "pods", "", "web")),
    ("POST", "/api/v1/namespaces/default/pods", {}, ("create", "", "v1", "default", "pods", "", "")),
    ("PUT", "/api/v1/namespaces/default/pods/web", {}, ("update", "", "v1", "default", "pods", "", "web")),
    ("PATCH", "/api/v1/namespaces/default/pods/web", {}, ("patch", "", "v1", "default", "pods", "", "web")),
    ("DELETE", "/api/v1/namespaces/default/pods/web", {},
     ("delete", "", "v1", "default", "pods", "", "web")),
    ("DELETE", "/api/v1/namespaces/default/pods", {},
     ("deletecollection", "", "v1", "default", "pods", "", "")),
    ("GET", "/api/v1/namespaces/default/pods/web/log", {},
     ("get", "", "v1", "default", "pods", "log", "web")),
    ("PUT", "/api/v1/namespaces/default/pods/web/status", {},
     ("update", "", "v1", "default", "pods", "status", "web")),
    ("POST", "/api/v1/namespaces/default/pods/web/exec", {"command": "ls"},
     ("connect", "", "v1", "default", "pods", "exec", "web")),
    ("GET", "/api/v1/namespaces/default/pods/web/exec", {},
     ("connect", "", "v1", "default", "pods", "exec", "web")),
    ("POST", "/api/v1/namespaces/default/pods/web/attach", {},
     ("connect", "", "v1", "default", "pods", "attach", "web")),
    ("POST", "/api/v1/namespaces/default/pods/web/portforward", {},
     ("connect", "", "v1", "default", "pods", "portforward", "web")),
    ("GET", "/api/v1/namespaces/default/pods/web/proxy/metrics", {},
     ("connect", "", "v1", "default", "pods", "proxy", "web")),
    ("GET", "/api/v1/proxy/namespaces/default/pods/web/metrics", {},
     ("proxy", "", "v1", "default", "pods", "", "web")),
    ("GET", "/api/v1/namespaces", {}, ("list", "", "v1", "", "namespaces", "", "")),
    ("GET", "/api/v1/namespaces/team-a", {}, ("get", "", "v1", "team-a", "namespaces", "", "team-a")),
    ("DELETE", "/api/v1/namespaces/team-a", {},
     ("delete", "", "v1", "team-a", "namespaces", "", "team-a")),
    ("PUT", "/api/v1/namespaces/team-a/status", {},
     ("update", "", "v1", "team-a", "namespaces", "status", "team-a")),
    ("PUT", "/api/v1/namespaces/team-a/finalize", {},
     ("update", "", "v1", "team-a", "namespaces", "finalize", "team-a")),
    ("GET", "/api/v1/nodes", {}, ("list", "", "v1", "", "nodes", "", "")),
    ("PATCH", "/api/v1/nodes/node-1/status", {}, ("patch", "", "v1", "", "nodes", "status", "node-1")),
    ("GET", "/apis/apps/v1/deployments", {}, ("list", "apps", "v1", "", "deployments", "", "")),
    ("GET", "/apis/apps/v1/namespaces/prod/deployments/api", {},
     ("get", "apps", "v1", "prod", "deployments", "", "api")),
    ("PUT", "/apis/apps/v1/namespaces/prod/deployments/api/scale", {},
     ("update", "apps", "v1", "prod", "deployments", "scale", "api")),
    ("GET", "/apis/apps/v1/watch/namespaces/prod/deployments", {},
     ("watch", "apps", "v1", "prod", "deployments", "", "")),
    ("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1", {},
     ("update", "coordination.k8s.io", "v1", "kube-node-lease", "leases", "", "node-1")),
    ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", {},
     ("list", "rbac.authorization.k8s.io", "v1", "", "clusterroles", "", "")),
    ("DELETE", "/apis/batch/v1/namespaces/ci/jobs", {},
     ("deletecollection", "batch", "v1", "ci", "jobs", "", "")),
    ("GET", "/api/v1/namespaces/default/pods", {"fieldSelector": "metadata.name=web"},
     ("list", "", "v1", "default", "pods", "", "web")),
    ("GET", "/api/v1/namespaces/default/pods", {"fieldSelector": "metadata.name=web", "watch": "true"},
     ("watch", "", "v1", "default", "pods", "", "web")),
    ("GET", "/api/v1/namespaces/default/pods", {"fieldSelector": "metadata.name!=web"},
     ("list", "", "v1", "default", "pods", "", "")),
    ("GET", "/api/v1/namespaces/default/pods", {"fieldSelector": "spec.nodeName=n1,metadata.name==web"},
     ("list", "", "v1", "default", "pods", "", "web")),
    ("OPTIONS", "/api/v1/pods", {}, ("", "", "v1", "", "pods", "", "")),
    ("GET", "/api/v1/namespaces/default/pods/web/log/extra/parts", {},
     ("get", "", "v1", "default", "pods", "log", "web")),
]

NON_RESOURCE: list[tuple[str, str, str]] = [
    ("GET", "/", "get"),
    ("GET", "/api", "get"),
    ("GET", "/api/v1", "get"),
    ("GET", "/apis", "get"),
    ("GET", "/apis/apps", "get"),
    ("GET", "/apis/apps/v1", "get"),
    ("GET", "/version", "get"),
    ("GET", "/healthz", "get"),
    ("GET", "/openapi/v3/apis/apps/v1", "get"),
    ("POST", "/logs/kubelet.log", "post"),
    ("HEAD", "/livez", "head"),
    ("GET", "/api/v1/watch", "get"),
    ("GET", "/other/v1/pods", "get"),
]


@pytest.mark.parametrize(("method", "path", "query", "expected"), ROWS)
def test_resource_requests_are_classified_like_the_api_server(
    method: str, path: str, query: dict[str, str], expected: tuple[str, ...]
) -> None:
    """Each row's verb, group, version, namespace, resource, subresource and name match the api-server."""
    info = classify(method, path, query)
    assert info.is_resource_request
    got = (info.verb, info.api_group, info.api_version, info.namespace, info.resource,
           info.subresource, info.name)
    assert got == expected


@pytest.mark.parametrize(("method", "path", "verb"), NON_RESOURCE)
def test_non_resource_urls_get_the_lower_cased_method_as_verb(method: str, path: str, verb: str) -> None:
    """Paths outside /api/v1/... and /apis/g/v/... are non-resource requests."""
    info = classify(method, path, {})
    assert not info.is_resource_request
    assert info.verb == verb
    assert info.path == path


def test_query_details_are_read_for_pricing() -> None:
    """limit, resourceVersion, selectors, timeoutSeconds and dryRun are carried over."""
    info = classify("GET", "/api/v1/pods", {
        "limit": "500", "resourceVersion": "0", "labelSelector": "app=web", "fieldSelector": "x=y",
        "timeoutSeconds": "300", "dryRun": "All",
    })
    assert (info.limit, info.resource_version, info.label_selector, info.field_selector,
            info.timeout_seconds, info.dry_run) == (500, "0", "app=web", "x=y", 300, True)


@pytest.mark.parametrize("limit", ["", "-5", "lots"])
def test_malformed_numbers_read_as_absent(limit: str) -> None:
    """A limit that is not a non-negative integer counts as no limit rather than failing."""
    assert classify("GET", "/api/v1/pods", {"limit": limit}).limit == 0


def test_the_api_group_prefix_is_recorded() -> None:
    """`api_prefix` says whether the core or a named group was addressed."""
    assert classify("GET", "/api/v1/pods", {}).api_prefix == "api"
    assert classify("GET", "/apis/apps/v1/deployments", {}).api_prefix == "apis"


def test_long_running_requests_are_recognised() -> None:
    """Watches, exec and log reads hold a connection."""
    assert classify("GET", "/api/v1/pods", {"watch": "true"}).is_long_running
    assert classify("POST", "/api/v1/namespaces/a/pods/p/exec", {}).is_long_running
    assert classify("GET", "/api/v1/namespaces/a/pods/p/log", {}).is_long_running
    assert not classify("GET", "/api/v1/pods", {}).is_long_running
    assert isinstance(classify("GET", "/version", {}), RequestInfo)


def test_the_fast_constructor_builds_an_ordinary_request_info() -> None:
    """classify's shortcut around the dataclass __init__ gives a value equal to a normal one."""
    info = classify("GET", "/apis/apps/v1/namespaces/prod/deployments", {"limit": "5"})
    path = "/apis/apps/v1/namespaces/prod/deployments"
    normal = RequestInfo(is_resource_request=True, verb="list", path=path,
                         api_prefix="apis", api_group="apps", api_version="v1", namespace="prod",
                         resource="deployments", limit=5)
    assert info == normal
    assert hash(info) == hash(normal)
