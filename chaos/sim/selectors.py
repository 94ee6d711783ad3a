"""Label and field selectors with the api-server's syntax and errors.

Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h` into requirements and matches objects against them;
field selectors know the field labels each kind's api-server strategy supports (pods:
`status.phase`, `spec.nodeName`, ...; events: `involvedObject.*`, `reason`, `type`, ...).
It must never accept what the api-server rejects silently: a bad selector is a `SelectorError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_KEY = re.compile(r"^([a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?/)?[a-zA-Z0-9]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$")
_VALUE = re.compile(r"^([a-zA-Z0-9]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?)?$")
_SET = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


class SelectorError(ValueError):
    """The selector does not parse."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # =, !=, in, notin, exists, !exists
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # != and notin


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t.strip() for t in terms]


def _check(key: str, values: tuple[str, ...]) -> None:
    if not _KEY.match(key) or len(key.split("/")[-1]) > 63:
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r}")
    for value in values:
        if not _VALUE.match(value) or len(value) > 63:
            raise SelectorError(f"unable to parse requirement: invalid label value: {value!r}")


def _term(term: str) -> Requirement:
    if not term:
        raise SelectorError("found '', expected: identifier")
    found = _SET.match(term)
    if found:
        values = tuple(v.strip() for v in found.group(3).split(",") if v.strip())
        _check(found.group(1), values)
        return Requirement(found.group(1), found.group(2), values)
    for op in ("!=", "==", "="):
        if op in term:
            key, _, value = (p.strip() for p in term.partition(op))
            _check(key, (value,))
            return Requirement(key, "=" if op == "==" else op, (value,))
    if term.startswith("!"):
        _check(term[1:].strip(), ())
        return Requirement(term[1:].strip(), "!exists")
    _check(term, ())
    return Requirement(term, "exists")


def parse_labels(text: str | None) -> tuple[Requirement, ...]:
    if not text or not text.strip():
        return ()
    return tuple(_term(term) for term in _split_terms(text))


def _path(*keys: str) -> Callable[[dict[str, Any]], str]:
    def get(obj: dict[str, Any]) -> str:
        value: Any = obj
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    return get


def _pod_ips(obj: dict[str, Any]) -> str:
    return ",".join(str(ip.get("ip", "")) for ip in (obj.get("status") or {}).get("podIPs") or [])


_EVENT = {
    f"involvedObject.{k}": _path("involvedObject", k)
    for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
}
FIELDS: dict[str, dict[str, Callable[[dict[str, Any]], str]]] = {
    # kind -> the extra field labels its api-server strategy supports (besides metadata.name/namespace)
    "Pod": {
        "spec.nodeName": _path("spec", "nodeName"),
        "spec.restartPolicy": _path("spec", "restartPolicy"),
        "spec.schedulerName": _path("spec", "schedulerName"),
        "spec.serviceAccountName": _path("spec", "serviceAccountName"),
        "spec.hostNetwork": lambda o: "true" if (o.get("spec") or {}).get("hostNetwork") else "false",
        "status.phase": _path("status", "phase"),
        "status.podIP": _path("status", "podIP"),
        "status.podIPs": _pod_ips,
        "status.nominatedNodeName": _path("status", "nominatedNodeName"),
    },
    "Event": {
        **_EVENT,
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": lambda o: str(
            (o.get("source") or {}).get("component") or o.get("reportingComponent") or ""
        ),
        "type": _path("type"),
    },
    "Node": {
        "spec.unschedulable": lambda o: "true" if (o.get("spec") or {}).get("unschedulable") else "false"
    },
    "Secret": {"type": _path("type")},
    "Namespace": {"status.phase": _path("status", "phase")},
    "Job": {"status.successful": lambda o: str((o.get("status") or {}).get("succeeded", 0))},
    "ReplicaSet": {"status.replicas": lambda o: str((o.get("status") or {}).get("replicas", 0))},
    "ReplicationController": {"status.replicas": lambda o: str((o.get("status") or {}).get("replicas", 0))},
    "Service": {"spec.clusterIP": _path("spec", "clusterIP"), "spec.type": _path("spec", "type")},
    "CertificateSigningRequest": {"spec.signerName": _path("spec", "signerName")},
    "PersistentVolumeClaim": {"spec.volumeName": _path("spec", "volumeName")},
}
_META_FIELDS = {
    "metadata.name": _path("metadata", "name"),
    "metadata.namespace": _path("metadata", "namespace"),
}


@dataclass(frozen=True)
class FieldRequirement:
    key: str
    op: str  # = or !=
    value: str
    get: Callable[[dict[str, Any]], str]

    def matches(self, obj: dict[str, Any]) -> bool:
        return (self.get(obj) == self.value) == (self.op == "=")


def parse_fields(text: str | None, kind: str = "") -> tuple[FieldRequirement, ...]:
    """Field selectors: =, == and != on the fields the kind supports; empty terms are skipped."""
    if not text or not text.strip():
        return ()
    supported = {**_META_FIELDS, **FIELDS.get(kind, {})}
    out = []
    for term in _split_terms(text):
        if not term:
            continue  # the api-server skips empty terms ("metadata.name=x,")
        for op in ("!=", "==", "="):
            if op in term:
                key, _, value = (p.strip() for p in term.partition(op))
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        if key not in supported:
            raise SelectorError(f"field label not supported: {key}")
        out.append(FieldRequirement(key, "!=" if op == "!=" else "=", value, supported[key]))
    return tuple(out)


def matches(
    obj: dict[str, Any], labels: tuple[Requirement, ...], fields: tuple[FieldRequirement, ...] = ()
) -> bool:
    meta = obj.get("metadata") or {}
    if labels and not all(r.matches(meta.get("labels") or {}) for r in labels):
        return False
    return all(r.matches(obj) for r in fields)
