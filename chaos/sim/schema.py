"""What the generated protobuf schema says about a kind's JSON: known fields, required fields and
strategic-merge keys, as the api-server's strict decoding, validation and patching use them.

Unknown fields are reported with the api-server's paths (`spec.containers[0].bogus`); required
fields are those the OpenAPI marks required (no `+optional`, no omitempty) outside `status` and
`metadata`, which is where the api-server's validation says "Required value" for the fields
clients forget. It must never change an object and never know a custom resource (they have none).
"""

from __future__ import annotations

from typing import Any

from chaos.sim.kinds import META_FIELDS, Kind
from chaos.sim.protojson import Field, message_for, messages

Obj = dict[str, Any]
_SCALARS = frozenset({"string", "int32", "int64", "bool", "bytes", "double", "float", "uint32", "uint64"})
_OPAQUE = frozenset(
    {
        "meta.v1.Time", "meta.v1.MicroTime", "meta.v1.Duration", "intstr.IntOrString", "resource.Quantity",
        "runtime.RawExtension", "meta.v1.FieldsV1", "apiextensions.v1.JSON",
        "apiextensions.v1.JSONSchemaProps", "apiextensions.v1.JSONSchemaPropsOrBool",
        "apiextensions.v1.JSONSchemaPropsOrArray",
        "apiextensions.v1.JSONSchemaPropsOrStringArray", "meta.v1.Verbs", "authentication.v1.ExtraValue",
        "authorization.v1.ExtraValue", "certificates.v1.ExtraValue",
    }
)  # fmt: skip
_SKIP_REQUIRED = frozenset({"metadata", "status"})
_OPTIONAL_SINCE = frozenset({("apps.v1.StatefulSetSpec", "serviceName")})
"""Fields the OpenAPI still marks required that the 1.32 api-server accepts without (KEP-4770)."""


def message(kind: Kind) -> str | None:
    return None if kind.custom else message_for(kind.api_version, kind.kind)


def json_fields(name: str) -> dict[str, Field]:
    """JSON name -> field of a message, with inlined messages' fields spread in."""
    out: dict[str, Field] = {}
    for field in messages()[name][1]:
        if field[1]:
            out[field[1]] = field
        elif field[2] in messages():
            out.update(json_fields(field[2]))
    return out


def unknown_fields(kind: Kind, obj: Obj) -> list[str]:
    name = message(kind)
    if name is None:
        return []
    found: list[str] = []
    known = json_fields(name)
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key not in known:
            found.append(key)
        else:
            _walk_unknown(known[key], value, key, found)
    return sorted(found)


def _walk_unknown(field: Field, value: Any, path: str, found: list[str]) -> None:
    type_name, label = field[2], field[3]
    if type_name in _SCALARS or type_name in _OPAQUE:
        return
    if label == "r" and isinstance(value, list):
        for i, item in enumerate(value):
            _unknown_in(type_name, item, f"{path}[{i}]", found)
    elif label == "m" and isinstance(value, dict):
        for key, item in value.items():
            _unknown_in(type_name, item, f"{path}[{key}]", found)
    elif label == "":
        _unknown_in(type_name, value, path, found)


def _unknown_in(name: str, value: Any, path: str, found: list[str]) -> None:
    if not isinstance(value, dict):
        return
    known = json_fields(name)
    for key, item in value.items():
        if key not in known:
            found.append(f"{path}.{key}")
        else:
            _walk_unknown(known[key], item, f"{path}.{key}", found)


def missing_required(kind: Kind, obj: Obj) -> list[str]:
    """Paths of required fields the object lacks (outside metadata and status)."""
    name = message(kind)
    if name is None:
        return []
    missing: list[str] = []
    for key, field in json_fields(name).items():
        if key in _SKIP_REQUIRED or key in META_FIELDS:
            continue
        _required(field, obj.get(key), key, missing, top=True)
    return missing


def _required(field: Field, value: Any, path: str, missing: list[str], *, top: bool = False) -> None:
    type_name, label, flags = field[2], field[3], field[4]
    if value is None or value == "" or value == []:
        if "q" in flags and not top and type_name in ("string", *messages()) and type_name not in _OPAQUE:
            missing.append(path)
        return
    if type_name in _SCALARS or type_name in _OPAQUE:
        return
    items = list(enumerate(value)) if label == "r" and isinstance(value, list) else [(None, value)]
    for index, item in items:
        if not isinstance(item, dict) or label == "m":
            continue
        where = path if index is None else f"{path}[{index}]"
        for key, sub in json_fields(type_name).items():
            if key not in _SKIP_REQUIRED and (type_name, key) not in _OPTIONAL_SINCE:
                _required(sub, item.get(key), f"{where}.{key}", missing)


def merge_key(parent: str | None, key: str) -> tuple[str | None, str]:
    """(the field's message, its strategic-merge key or "") for `key` inside message `parent`."""
    if parent is None:
        return None, ""
    field = json_fields(parent).get(key)
    if field is None or field[2] in _SCALARS:
        return None, ""
    strategy, _, merge = field[5].partition(":")
    return field[2], merge if "merge" in strategy else ""
