"""Custom resources: the `Kind`s that stored CustomResourceDefinitions make servable, and what a CRD
gets when it is stored (Established and NamesAccepted conditions, accepted names).

A custom resource is served, listed and watched like a built-in kind, in JSON only, with no schema
of its own (unknown fields are kept). It must never shadow a built-in kind.
"""

from __future__ import annotations

from typing import Any

from chaos.sim.kinds import CRUD, TABLE, Kind
from chaos.sim.store import Store

Obj = dict[str, Any]
CRD = TABLE.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")


def _kinds_of(crd: Obj) -> list[Kind]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind_name = spec.get("group", ""), names.get("plural", ""), names.get("kind", "")
    if not (group and plural and kind_name):
        return []
    out = []
    versions = sorted(spec.get("versions") or [], key=lambda v: not v.get("storage"))
    for version in versions:
        if not version.get("served", True):
            continue
        subs = version.get("subresources") or {}
        kind = Kind(
            group, version.get("name", "v1"), plural, kind_name, spec.get("scope") == "Namespaced",
            verbs=CRUD, subresources=tuple(s for s in ("status", "scale") if s in subs),
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()), custom=True,
        )  # fmt: skip
        out.append(kind)
    return out


def custom_kinds(store: Store) -> list[Kind]:
    assert CRD is not None
    out: list[Kind] = []
    for _, crd in store.items(CRD):
        if TABLE.lookup(crd.get("spec", {}).get("group", ""), "", "") is None:
            out.extend(k for k in _kinds_of(crd) if TABLE.lookup(k.group, k.version, k.resource) is None)
    return out


def lookup(store: Store, group: str, version: str, resource: str) -> Kind | None:
    if not group or CRD is None or not store.bucket(CRD):
        return None
    for kind in custom_kinds(store):
        if (kind.group, kind.version, kind.resource) == (group, version, resource):
            return kind
    return None


def by_kind(store: Store, api_version: str, kind_name: str) -> Kind | None:
    for kind in custom_kinds(store):
        if (kind.api_version, kind.kind) == (api_version, kind_name):
            return kind
    return None


def served(store: Store) -> list[Kind]:
    """Every kind served now: the built-in table, then the custom resources."""
    return [*TABLE.kinds, *custom_kinds(store)]


def establish(crd: Obj, now: str) -> None:
    """What the apiextensions controllers write into a stored CRD's status."""
    spec = crd.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    conditions = [
        {"type": t, "status": "True", "lastTransitionTime": now, "reason": r, "message": m}
        for t, r, m in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        )
    ]
    stored = [v.get("name") for v in spec.get("versions") or [] if v.get("storage")]
    crd["status"] = {"acceptedNames": names, "conditions": conditions, "storedVersions": stored}
