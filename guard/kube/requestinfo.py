"""Classify a request the way the api-server's RequestInfoFactory does.

The path is the decoded path of `guard.kube.canonical` (empty segments carry no meaning, here as
there); the query is each parameter's first value, read by Go's rules: `watch` is true unless it is
`0` or `false` (any case), the name a `fieldSelector` pins exactly (`metadata.name=x`) becomes the
request's name when the list options parse. Pure: method + path + query in, `RequestInfo` out.
No I/O, no aiohttp.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestInfo:
    """What a request asks for, with the api-server's semantics.

    verb is the Kubernetes verb: get, list, watch, create, update, patch, delete,
    deletecollection, proxy, connect (exec/attach/portforward) for resource requests; the
    lower-cased HTTP method for non-resource requests.
    """

    is_resource_request: bool
    verb: str
    path: str
    api_prefix: str = ""  # "api" or "apis"
    api_group: str = ""  # "" for the core group
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    # Query details the admission step prices requests by.
    limit: int = 0  # ?limit=, 0 when absent
    resource_version: str = ""
    label_selector: str = ""
    field_selector: str = ""
    timeout_seconds: int = 0
    dry_run: bool = False
    send_initial_events: bool = False
    """`sendInitialEvents=true`: a watch that first delivers the whole state (WatchList informers)."""
    resource_version_match: str = ""
    has_continue: bool = False
    """The request carries a `continue` token (a later page of a paginated LIST)."""

    @property
    def is_long_running(self) -> bool:
        """Watches, log follows, exec/attach/port-forward: they hold a connection, not a rate."""
        return self.verb in {"watch", "connect", "proxy"} or (
            self.subresource == "log" and self.verb == "get"
        )

    @property
    def is_readonly(self) -> bool:
        return self.verb in {"get", "list", "watch"} or (
            not self.is_resource_request and self.verb in {"get", "head", "options"}
        )


# The api-server's RequestInfoFactory constants (k8s.io/apiserver/pkg/endpoints/request).
_API_PREFIXES = frozenset({"api", "apis"})
_GROUPLESS_PREFIXES = frozenset({"api"})
_SPECIAL_VERBS = frozenset({"proxy", "watch"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
# guard prices these as long-running connections, whatever the HTTP method.
_CONNECT_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy"})
_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                 "DELETE": "delete"}
_GO_INT = re.compile(r"[+-]?[0-9]+")
_TERM_OPERATORS = ("!=", "==", "=")


def _int(text: str | None) -> int:
    """A non-negative count from Go's strconv.ParseInt reading; 0 when absent or malformed."""
    if not text or not _GO_INT.fullmatch(text):
        return 0
    return max(0, int(text))


def go_bool(text: str) -> bool:
    """apimachinery's Convert_Slice_string_To_bool: anything but `0` or `false` (any case) is true."""
    return not (text == "0" or text.casefold() == "false")


def _options_parse(query: Mapping[str, str]) -> bool:
    """Whether the api-server's ListOptions decoding of `query` succeeds (its integers and field
    selector); when it fails the api-server names no object and reads `watch` by lower-casing."""
    limit = query.get("limit")
    if limit is not None and not _GO_INT.fullmatch(limit):
        return False
    timeout = query.get("timeoutSeconds")
    if timeout and not _GO_INT.fullmatch(timeout):
        return False
    return _field_terms(query.get("fieldSelector", "")) is not None


def _watches(value: str | None, parsed: bool) -> bool:
    """`watch=` as the api-server reads it: by the list options' bool conversion when they parse,
    else by its fallback (strings.ToLower, then anything but `false` or `0`)."""
    if value is None:
        return False
    return go_bool(value) if parsed else value.lower() not in ("false", "0")


def _split_terms(selector: str) -> list[str]:
    """fields.splitTerms: split on `,` not escaped by a backslash."""
    terms, start, escaped = [], 0, False
    for i, c in enumerate(selector):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return terms


def _unescape_value(value: str) -> str | None:
    """fields.UnescapeValue: a backslash escapes only a backslash, `,` or `=`; None otherwise."""
    out, escaped = [], False
    for c in value:
        if escaped:
            if c not in "\\,=":
                return None
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        else:
            out.append(c)
    return None if escaped else "".join(out)


def _field_terms(selector: str) -> list[tuple[str, str, str]] | None:
    """fields.ParseSelector's terms (sorted, as it sorts them), or None when it fails to parse."""
    found = []
    for term in sorted(t for t in _split_terms(selector) if t):
        for i in range(len(term)):
            op = next((o for o in _TERM_OPERATORS if term.startswith(o, i)), None)
            if op is not None:
                value = _unescape_value(term[i + len(op):])
                if value is None:
                    return None
                found.append((term[:i], op, value))
                break
        else:
            return None
    return found


def _name_from_selector(selector: str) -> str:
    """The name a field selector pins exactly (`metadata.name=x`), when it is a valid path segment
    name, as the api-server's RequestInfoFactory takes it."""
    for key, op, value in _field_terms(selector) or ():
        if key == "metadata.name" and op != "!=":
            ok = value not in (".", "..") and "/" not in value and "%" not in value
            return value if ok else ""
    return ""


def classify(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """method + path + query -> RequestInfo, with RequestInfoFactory's semantics.

    Never raises: what the api-server would refuse to parse is classified as a non-resource
    request, so the api-server (not guard) answers it.
    """
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3 or parts[0] not in _API_PREFIXES:
        return RequestInfo(is_resource_request=False, verb=method.lower(), path=path)
    prefix, group = parts[0], ""
    rest = parts[1:]
    if prefix not in _GROUPLESS_PREFIXES:
        if len(rest) < 3:
            return RequestInfo(is_resource_request=False, verb=method.lower(), path=path)
        group, rest = rest[0], rest[1:]
    version, rest = rest[0], rest[1:]
    return _resource_info(method, path, query, prefix, group, version, rest)


def _resource_info(method: str, path: str, query: Mapping[str, str], prefix: str, group: str,
                   version: str, rest: list[str]) -> RequestInfo:
    if rest and rest[0] in _SPECIAL_VERBS:
        if len(rest) < 2:  # the api-server answers 404 to /api/v1/watch
            return RequestInfo(is_resource_request=False, verb=method.lower(), path=path)
        verb, rest = rest[0], rest[1:]
    else:
        verb = _METHOD_VERBS.get(method, "")  # case-sensitive, as Go's switch on req.Method
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) >= 2 else ""
    subresource = rest[2] if len(rest) >= 3 and verb != "proxy" else ""
    field_selector = query.get("fieldSelector", "")
    if not name and verb == "get":
        parsed = _options_parse(query)
        verb = "watch" if _watches(query.get("watch"), parsed) else "list"
        if field_selector and parsed:
            name = _name_from_selector(field_selector)
    if not name and verb == "delete":
        verb = "deletecollection"
    if subresource in _CONNECT_SUBRESOURCES:
        verb = "connect"
    return _fast_info({
        "is_resource_request": True, "verb": verb, "path": path, "api_prefix": prefix,
        "api_group": group, "api_version": version, "namespace": namespace, "resource": resource,
        "subresource": subresource, "name": name, "limit": _int(query.get("limit")),
        "resource_version": query.get("resourceVersion", ""),
        "label_selector": query.get("labelSelector", ""), "field_selector": field_selector,
        "timeout_seconds": _int(query.get("timeoutSeconds")), "dry_run": bool(query.get("dryRun")),
        "send_initial_events": bool(query.get("sendInitialEvents")) and go_bool(query["sendInitialEvents"]),
        "resource_version_match": query.get("resourceVersionMatch", ""),
        "has_continue": bool(query.get("continue")),
    })


def _fast_info(values: dict[str, object]) -> RequestInfo:
    """A RequestInfo without the frozen dataclass __init__, which costs ~3 us for 16 fields on
    every request. Equal to RequestInfo(**values); a unit test pins that."""
    info = object.__new__(RequestInfo)
    info.__dict__.update(values)
    return info
