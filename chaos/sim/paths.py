"""What a request asks for: the api-server's RequestInfo rules applied to method, path and query.

`/api/v1/namespaces/ns/pods/name/log` becomes verb get, resource pods, subresource log; anything
shorter than a resource (`/api`, `/apis/apps/v1`) or outside the API prefixes is a non-resource
request whose verb is the lower-cased method. It must never look at the store or at credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    resource_request: bool
    verb: str
    path: str
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def _resource_verb(method: str, name: str, watch: bool) -> str:
    if method in ("GET", "HEAD"):
        if watch:
            return "watch"
        return "get" if name else "list"
    if method == "DELETE" and not name:
        return "deletecollection"
    return _VERBS.get(method, method.lower())


def parse(method: str, path: str, query: Mapping[str, str]) -> Target:
    parts = [p for p in path.strip("/").split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Target(False, method.lower(), path)
    watch = False
    if rest[0] == "watch":
        # The legacy /watch/ prefix: same request as ?watch=true.
        watch, rest = True, rest[1:]
        if not rest:
            return Target(False, method.lower(), path)
    watch = watch or query.get("watch", "").lower() in ("true", "1")
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) == 2:
        # /api/v1/namespaces/{name} is the namespace object itself, cluster-scoped.
        namespace = rest[1]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    verb = _resource_verb(method, name, watch)
    if watch and name:
        verb = "watch"
    return Target(True, verb, path, group, version, resource, subresource, namespace, name)
