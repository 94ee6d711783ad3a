"""OpenAPI v2 and v3 documents built from the protobuf schema of the kinds served.

Each definition is a message's JSON shape: properties with types, descriptions, required fields and
the strategic-merge extensions (`x-kubernetes-patch-merge-key`), enough for `kubectl explain` and
client-side validation. PATCH operations advertise `fieldValidation`, so kubectl leaves validation
to the server. Custom resources get an open object. It must never describe a kind that is not served.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from chaos.sim import protobuf as pb
from chaos.sim import schema
from chaos.sim.discovery import group_versions
from chaos.sim.kinds import Kind
from chaos.sim.protojson import Field, messages

Doc = dict[str, Any]
_PREFIXES = {
    "meta.v1.": "io.k8s.apimachinery.pkg.apis.meta.v1.",
    "resource.": "io.k8s.apimachinery.pkg.api.resource.",
    "intstr.": "io.k8s.apimachinery.pkg.util.intstr.",
    "runtime.": "io.k8s.apimachinery.pkg.runtime.",
    "apiregistration.v1.": "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.",
    "apiextensions.v1.": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.",
}
_SCALARS = {
    "string": ("string", ""),
    "bytes": ("string", "byte"),
    "bool": ("boolean", ""),
    "int32": ("integer", "int32"),
    "int64": ("integer", "int64"),
    "uint32": ("integer", "int32"),
    "uint64": ("integer", "int64"),
    "double": ("number", "double"),
    "float": ("number", "float"),
}
_SPECIAL: dict[str, Doc] = {
    "meta.v1.Time": {"type": "string", "format": "date-time"},
    "meta.v1.MicroTime": {"type": "string", "format": "date-time"},
    "meta.v1.Duration": {"type": "string"},
    "intstr.IntOrString": {"type": "string", "format": "int-or-string", "x-kubernetes-int-or-string": True},
    "resource.Quantity": {"x-kubernetes-int-or-string": True},
    "runtime.RawExtension": {"type": "object"},
    "meta.v1.FieldsV1": {"type": "object"},
    "apiextensions.v1.JSON": {},
    "apiextensions.v1.JSONSchemaPropsOrBool": {},
    "apiextensions.v1.JSONSchemaPropsOrArray": {},
    "apiextensions.v1.JSONSchemaPropsOrStringArray": {},
    "meta.v1.Verbs": {"type": "array", "items": {"type": "string"}},
}


def definition_name(message: str) -> str:
    for short, full in _PREFIXES.items():
        if message.startswith(short):
            return full + message[len(short) :]
    return "io.k8s.api." + message


def _type(type_name: str, ref: str) -> Doc:
    if type_name in _SCALARS:
        json_type, fmt = _SCALARS[type_name]
        return {"type": json_type, **({"format": fmt} if fmt else {})}
    if type_name.endswith("ExtraValue"):
        return {"type": "array", "items": {"type": "string"}}
    return {"$ref": ref + definition_name(type_name)}


def _property(field: Field, ref: str, v3: bool) -> Doc:
    _, _, type_name, label, _, patch, doc = field
    inner = _type(type_name, ref)
    if label == "r":
        prop: Doc = {"type": "array", "items": inner}
    elif label == "m":
        prop = {"type": "object", "additionalProperties": inner}
    elif "$ref" in inner and v3:
        prop = {"allOf": [inner]}
    else:
        prop = dict(inner)
    if doc and "$ref" not in prop:
        prop["description"] = doc
    strategy, _, key = patch.partition(":")
    if strategy:
        prop["x-kubernetes-patch-strategy"] = strategy
    if key:
        prop["x-kubernetes-patch-merge-key"] = key
    return prop


def _definition(message: str, ref: str, v3: bool) -> Doc:
    if message in _SPECIAL:
        return dict(_SPECIAL[message])
    doc, _ = messages()[message]
    fields = schema.json_fields(message)
    out: Doc = {"type": "object", "properties": {k: _property(f, ref, v3) for k, f in fields.items()}}
    required = sorted(k for k, f in fields.items() if "q" in f[4])
    if required:
        out["required"] = required
    if doc:
        out["description"] = doc
    return out


def _closure(roots: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen or name not in messages():
            continue
        seen[name] = None
        if name not in _SPECIAL:
            stack.extend(f[2] for f in messages()[name][1])
    return sorted(seen)


def definitions(kinds: list[Kind], ref: str, v3: bool) -> Doc:
    roots = {schema.message(k): k for k in kinds if schema.message(k)}
    roots_list = [r for r in roots if r] + ["meta.v1.Status", "meta.v1.DeleteOptions"]
    out: Doc = {}
    for name in _closure(roots_list):
        out[definition_name(name)] = _definition(name, ref, v3)
    for name, kind in roots.items():
        if name:
            gvk = [{"group": kind.group, "version": kind.version, "kind": kind.kind}]
            out[definition_name(name)]["x-kubernetes-group-version-kind"] = gvk
    for kind in kinds:
        if kind.custom:
            out[f"{_reversed(kind.group)}.{kind.version}.{kind.kind}"] = {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "x-kubernetes-group-version-kind": [{"group": kind.group, "version": kind.version,
                                                     "kind": kind.kind}],
            }  # fmt: skip
    return out


def _reversed(group: str) -> str:
    return ".".join(reversed(group.split(".")))


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _patch(kind: Kind, v3: bool) -> Doc:
    gvk = {"group": kind.group, "version": kind.version, "kind": kind.kind}
    params = [{"name": n, "in": "query", "type": "string", "uniqueItems": True}
              for n in ("dryRun", "fieldManager", "fieldValidation", "force")]  # fmt: skip
    if v3:
        params = [{"name": p["name"], "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                  for p in params]  # fmt: skip
    return {"operationId": f"patch{kind.kind}", "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk, "parameters": params,
            "responses": {"200": {"description": "OK"}}}  # fmt: skip


def _paths(kinds: list[Kind], v3: bool) -> Doc:
    paths: Doc = {}
    for kind in kinds:
        if not kind.stored:
            continue
        scope = "/namespaces/{namespace}" if kind.namespaced else ""
        paths[f"/{_gv_path(kind.group, kind.version)}{scope}/{kind.resource}/{{name}}"] = {
            "patch": _patch(kind, v3)
        }
    return paths


_INFO = {"title": "Kubernetes", "version": "v1.32.0"}


def v3_group_version(kinds: list[Kind], group: str, version: str) -> Doc | None:
    chosen = [k for k in kinds if k.group == group and k.version == version]
    if not chosen:
        return None
    return {"openapi": "3.0.0", "info": _INFO, "paths": _paths(chosen, True),
            "components": {"schemas": definitions(chosen, "#/components/schemas/", True)}}  # fmt: skip


def v3_root(kinds: list[Kind]) -> Doc:
    paths = {}
    for group, versions in group_versions(kinds).items():
        for version in versions:
            digest = _digest(tuple(k for k in kinds if k.group == group and k.version == version))
            paths[_gv_path(group, version)] = {
                "serverRelativeURL": f"/openapi/v3/{_gv_path(group, version)}?hash={digest}"
            }
    return {"paths": paths}


@lru_cache(maxsize=256)
def _digest(kinds: tuple[Kind, ...]) -> str:
    text = json.dumps([(k.group, k.version, k.resource, k.kind, k.namespaced) for k in kinds])
    return hashlib.sha512(text.encode()).hexdigest()[:128].upper()


def v2(kinds: list[Kind]) -> Doc:
    return {"swagger": "2.0", "info": _INFO, "paths": _paths(kinds, False),
            "definitions": definitions(kinds, "#/definitions/", False)}  # fmt: skip


def v2_protobuf_skeleton() -> bytes:
    """The v2 document as gnostic's OpenAPIv2 protobuf: swagger (1), info (2), empty paths (8)."""
    info = pb.length_field(1, _INFO["title"].encode()) + pb.length_field(2, _INFO["version"].encode())
    return pb.length_field(1, b"2.0") + pb.length_field(2, info) + pb.length_field(8, b"")
