"""The api-server's reading of a request target, ported line by line from its Go code, as the oracle
guard's classification is compared with. Import: `from tests.apiserver_requestinfo import read`.

Sources (kubernetes v1.32): net/http + net/url (`url.ParseRequestURI`: the path percent-decoded, a
bad escape or a control character refused with 400; `URL.Query()` = `url.ParseQuery` minus its
error), k8s.io/apiserver/pkg/endpoints/request/requestinfo.go (`NewRequestInfo`, `splitPath`),
k8s.io/apimachinery/pkg/runtime/conversion.go (bool and int64 conversions of query values) and
k8s.io/apimachinery/pkg/fields/selector.go (`ParseSelector`, `RequiresExactMatch`).
Deliberately written apart from guard.kube (no import from guard), so a shared mistake is unlikely.
Label selectors are assumed to parse (their grammar is not ported).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SPECIAL_VERBS = {"proxy", "watch"}
SPECIAL_VERBS_NO_SUBRESOURCES = {"proxy"}
NAMESPACE_SUBRESOURCES = {"status", "finalize"}
API_PREFIXES = {"api", "apis"}
GROUPLESS_API_PREFIXES = {"api"}


@dataclass(frozen=True)
class Info:
    """The RequestInfo fields guard must agree on."""

    resource_request: bool
    verb: str
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


class Refused(Exception):
    """The api-server (its Go HTTP stack or the RequestInfo filter) does not serve this target."""


def _unescape(s: str, query: bool) -> str:
    """net/url.unescape in encodePath or encodeQueryComponent mode."""
    data, out, i = s.encode("utf-8", "surrogateescape"), bytearray(), 0
    while i < len(data):
        c = data[i]
        if c == ord("%"):
            h = data[i + 1:i + 3]
            if len(h) < 2 or not all(chr(x) in "0123456789abcdefABCDEF" for x in h):
                raise ValueError("invalid URL escape")
            out.append(int(h, 16))
            i += 3
        elif c == ord("+") and query:
            out.append(ord(" "))
            i += 1
        else:
            out.append(c)
            i += 1
    return out.decode("utf-8", "surrogateescape")


def parse_query(raw: str) -> dict[str, list[str]]:
    """url.ParseQuery, errors dropped as URL.Query() drops them."""
    m: dict[str, list[str]] = {}
    while raw:
        key, _, raw = raw.partition("&")
        if ";" in key or key == "":
            continue
        key, _, value = key.partition("=")
        try:
            key, value = _unescape(key, True), _unescape(value, True)
        except ValueError:
            continue
        m.setdefault(key, []).append(value)
    return m


def _bool(values: list[str]) -> bool:
    """runtime.Convert_Slice_string_To_bool."""
    if not values:
        return False
    return not (values[0] == "0" or values[0].casefold() == "false")


def _int64_ok(values: list[str] | None, pointer: bool) -> bool:
    if not values:
        return True
    if pointer and values[0] == "":
        return True
    return re.fullmatch(r"[+-]?[0-9]+", values[0]) is not None


def _split_terms(s: str) -> list[str]:
    if not s:
        return []
    terms, start, in_slash = [], 0, False
    for i, c in enumerate(s):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(s[start:i])
            start = i + 1
    terms.append(s[start:])
    return terms


def _unescape_value(s: str) -> str:
    out, in_slash = "", False
    for c in s:
        if in_slash:
            if c not in ("\\", ",", "="):
                raise ValueError("invalid escape sequence")
            out += c
            in_slash = False
        elif c == "\\":
            in_slash = True
        else:
            out += c
    if in_slash:
        raise ValueError("unterminated escape")
    return out


def parse_field_selector(s: str) -> list[tuple[str, str, str]]:
    """fields.ParseSelector's terms; ValueError when it does not parse."""
    items = []
    for part in sorted(_split_terms(s)):
        if part == "":
            continue
        for i in range(len(part)):
            op = next((o for o in ("!=", "==", "=") if part[i:].startswith(o)), None)
            if op is not None:
                items.append((part[:i], op, _unescape_value(part[i + len(op):])))
                break
        else:
            raise ValueError(f"invalid selector: {s!r}")
    return items


def _exact_name(terms: list[tuple[str, str, str]]) -> str | None:
    for field, op, value in terms:
        if field == "metadata.name" and op in ("==", "="):
            return value
    return None


def _decode_list_options(query: dict[str, list[str]]) -> tuple[bool, str | None]:
    """(watch, field selector's exact metadata.name) from DecodeParameters; ValueError on failure."""
    if not _int64_ok(query.get("limit"), False) or not _int64_ok(query.get("timeoutSeconds"), True):
        raise ValueError("bad integer")
    selector = query.get("fieldSelector")
    terms = parse_field_selector(selector[0]) if selector else []
    return _bool(query.get("watch", [])), _exact_name(terms)


def read(method: str, target: str) -> Info:
    """What the api-server's RequestInfo is for `method` and the raw request `target`."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        raise Refused("invalid control character in URL")
    raw_path, _, raw_query = target.partition("?")
    try:
        path = _unescape(raw_path, False)
    except ValueError as e:
        raise Refused(str(e)) from e
    return new_request_info(method, path, parse_query(raw_query))


def new_request_info(method: str, path: str, query: dict[str, list[str]]) -> Info:
    """RequestInfoFactory.NewRequestInfo."""
    verb = method.lower()
    parts = path.strip("/").split("/") if path.strip("/") else []
    if len(parts) < 3 or parts[0] not in API_PREFIXES:
        return Info(False, verb)
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix not in GROUPLESS_API_PREFIXES:
        if len(parts) < 3:
            return Info(False, verb)
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]
    if parts[0] in SPECIAL_VERBS:
        if len(parts) < 2:
            raise Refused("unable to determine kind and namespace from url")
        verb, parts = parts[0], parts[1:]
    else:
        verb = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(method, "")
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = subresource = name = ""
    if len(parts) >= 3 and verb not in SPECIAL_VERBS_NO_SUBRESOURCES:
        subresource = parts[2]
    if len(parts) >= 2:
        name = parts[1]
    if len(parts) >= 1:
        resource = parts[0]
    if not name and verb == "get":
        try:
            watch, selected = _decode_list_options(query)
        except ValueError:
            values = query.get("watch", [])
            watch, selected = bool(values) and values[0].lower() not in ("false", "0"), None
        verb = "watch" if watch else "list"
        valid = selected is not None and selected not in (".", "..") and not {"/", "%"} & set(selected)
        name = selected if valid and selected is not None else name
    if not name and verb == "delete":
        verb = "deletecollection"
    return Info(True, verb, group, version, namespace, resource, subresource, name)
