"""Label and field selectors with the api-server's syntax and errors.

Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h` into requirements and matches objects against them.
It must never accept what the api-server rejects silently: a bad selector is a `SelectorError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_KEY = re.compile(r"^([a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?/)?[a-zA-Z0-9]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$")
_VALUE = re.compile(r"^([a-zA-Z0-9]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?)?$")
_SET = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
FIELDS = ("metadata.name", "metadata.namespace")


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


def parse_fields(text: str | None) -> tuple[Requirement, ...]:
    """Field selectors: only =, == and != on metadata.name and metadata.namespace."""
    if not text or not text.strip():
        return ()
    out = []
    for term in _split_terms(text):
        for op in ("!=", "==", "="):
            if op in term:
                key, _, value = (p.strip() for p in term.partition(op))
                break
        else:
            raise SelectorError(f"invalid selector: '{term}'; can't understand '{term}'")
        if key not in FIELDS:
            raise SelectorError(f"field label not supported: {key}")
        out.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
    return tuple(out)


def matches(obj: dict[str, Any], labels: tuple[Requirement, ...], fields: tuple[Requirement, ...]) -> bool:
    meta = obj.get("metadata") or {}
    obj_labels = meta.get("labels") or {}
    if not all(r.matches(obj_labels) for r in labels):
        return False
    if not fields:
        return True
    values = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}
    return all(r.matches(values) for r in fields)
