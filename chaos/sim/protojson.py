"""Kubernetes objects between their JSON shape and their protobuf messages, by the generated schema.

`decode_object` reads a request body (envelope, then the kind's message) into the JSON the rest of
the simulator stores; `encode_object` writes a JSON object (an object, a list, a Status) as the
api-server's protobuf answer, or returns None for a kind without a message (custom resources stay
JSON). It follows Go's rules where clients can tell: proto2 fields are written when the JSON has
them (false and 0 too); on reading, a zero scalar shows in the JSON only where Go's encoder would
print it (a pointer, or a field without omitempty). Time, MicroTime, Duration, IntOrString,
Quantity, RawExtension, FieldsV1 and the list wrappers have their JSON forms. It must never guess
a message for a kind: a group it does not know is JSON only.
"""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime
from typing import Any

from chaos.sim import protobuf as pb
from chaos.sim.protobuf import ProtobufError

Obj = dict[str, Any]
Field = tuple[int, str, str, str, str, str, str]
_INTS = frozenset({"int32", "int64", "uint32", "uint64"})
_LISTS = frozenset({"meta.v1.Verbs", "authentication.v1.ExtraValue", "authorization.v1.ExtraValue",
                    "certificates.v1.ExtraValue"})  # fmt: skip
_RAW_JSON = frozenset({"runtime.RawExtension", "meta.v1.FieldsV1", "apiextensions.v1.JSON"})
_OTHER_GROUPS = {"apiregistration.k8s.io": "apiregistration", "apiextensions.k8s.io": "apiextensions"}
BUILT_IN_GROUPS = frozenset({
    "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "rbac.authorization.k8s.io",
    "scheduling.k8s.io", "storage.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io",
    "node.k8s.io", "certificates.k8s.io", "admissionregistration.k8s.io", "flowcontrol.apiserver.k8s.io",
    "authentication.k8s.io", "authorization.k8s.io", "apiregistration.k8s.io", "apiextensions.k8s.io",
    "meta.k8s.io",
})  # fmt: skip
_schema: dict[str, tuple[str, tuple[Field, ...]]] | None = None


def messages() -> dict[str, tuple[str, tuple[Field, ...]]]:
    """The generated table, imported on first use (most simulator runs never speak protobuf)."""
    global _schema
    if _schema is None:
        from chaos.sim.protoschema import MESSAGES

        _schema = MESSAGES
    return _schema


def message_for(api_version: str, kind: str) -> str | None:
    group, _, version = api_version.rpartition("/")
    if group and group not in BUILT_IN_GROUPS:
        return None
    package = _OTHER_GROUPS.get(group) or (group.split(".")[0] if group else "core")
    for name in (f"{package}.{version}.{kind}", f"meta.v1.{kind}"):
        if name in messages():
            return name
    return None


# -- JSON -> protobuf ---------------------------------------------------------------------------
def encode_object(obj: Obj) -> bytes | None:
    """The enveloped protobuf of a JSON object, or None when its kind has no message."""
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    name = message_for(api_version, kind)
    if name is None:
        return None
    return pb.wrap(api_version, kind, encode(name, obj))


def encode(name: str, value: Any) -> bytes:
    if name in _SPECIAL_ENCODERS:
        return _SPECIAL_ENCODERS[name](value)
    if name in _LISTS:
        return b"".join(pb.length_field(1, str(v).encode()) for v in value or [])
    if not isinstance(value, dict):
        return b""
    out = bytearray()
    for field in messages()[name][1]:
        item = value.get(field[1]) if field[1] else value  # "" is a message inlined in this one
        if item is not None:
            out += _encode_field(field, item)
    return bytes(out)


def _encode_field(field: Field, value: Any) -> bytes:
    number, _, type_name, label = field[:4]
    if label == "m" and isinstance(value, dict):
        return b"".join(
            pb.length_field(number, pb.length_field(1, str(k).encode()) + _encode_one(2, type_name, v))
            for k, v in value.items()
            if v is not None
        )
    if label == "r":
        return b"".join(_encode_one(number, type_name, v) for v in value if v is not None)
    return _encode_one(number, type_name, value)


def _encode_one(number: int, type_name: str, value: Any) -> bytes:
    try:
        if type_name == "string":
            return pb.length_field(number, str(value).encode())
        if type_name == "bytes":
            return pb.length_field(number, base64.b64decode(value) if isinstance(value, str) else b"")
        if type_name == "bool":
            return pb.varint_field(number, int(bool(value)))
        if type_name in _INTS:
            return pb.varint_field(number, int(value))
        if type_name in ("double", "float"):
            return pb.double_field(number, float(value), width=8 if type_name == "double" else 4)
    except (ValueError, TypeError):
        return b""  # a value the type cannot hold is dropped, as a typed decoder would refuse it
    return pb.length_field(number, encode(type_name, value))


def _parse_time(text: Any) -> tuple[int, int]:
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return int(moment.timestamp()), moment.microsecond * 1000


def _time(value: Any) -> bytes:
    try:
        seconds, nanos = _parse_time(value)
    except ValueError:
        return b""
    return pb.varint_field(1, seconds) + (pb.varint_field(2, nanos) if nanos else b"")


def _int_or_string(value: Any) -> bytes:
    if isinstance(value, int) and not isinstance(value, bool):
        return pb.varint_field(1, 0) + pb.varint_field(2, value) + pb.length_field(3, b"")
    return pb.varint_field(1, 1) + pb.varint_field(2, 0) + pb.length_field(3, str(value).encode())


def _raw_json(value: Any) -> bytes:
    return pb.length_field(1, json.dumps(value, separators=(",", ":")).encode())


_DURATION_UNITS = {"h": 3600e9, "m": 60e9, "s": 1e9, "ms": 1e6, "us": 1e3, "µs": 1e3, "ns": 1.0}


def _duration(value: Any) -> bytes:
    text, total, number = str(value), 0.0, ""
    unit = ""
    for char in [*text, "0"]:
        if char.isdigit() or char == ".":
            if unit:
                total += float(number or 0) * _DURATION_UNITS.get(unit, 0)
                number, unit = "", ""
            number += char
        else:
            unit += char
    return pb.varint_field(1, int(total))


_PROPS = "apiextensions.v1.JSONSchemaProps"


def _or_bool(value: Any) -> bytes:
    if isinstance(value, dict):
        return pb.varint_field(1, 1) + pb.length_field(2, encode(_PROPS, value))
    return pb.varint_field(1, int(bool(value)))


def _or_list(value: Any, *, strings: bool) -> bytes:
    if isinstance(value, dict):
        return pb.length_field(1, encode(_PROPS, value))
    if strings:
        return b"".join(pb.length_field(2, str(v).encode()) for v in value or [])
    return b"".join(pb.length_field(2, encode(_PROPS, v)) for v in value or [])


_SPECIAL_ENCODERS = {
    "meta.v1.Time": _time,
    "meta.v1.MicroTime": _time,
    "meta.v1.Duration": _duration,
    "intstr.IntOrString": _int_or_string,
    "resource.Quantity": lambda v: pb.length_field(1, str(v).encode()),
    "runtime.RawExtension": _raw_json,
    "meta.v1.FieldsV1": _raw_json,
    "apiextensions.v1.JSON": _raw_json,
    "apiextensions.v1.JSONSchemaPropsOrBool": _or_bool,
    "apiextensions.v1.JSONSchemaPropsOrArray": lambda v: _or_list(v, strings=False),
    "apiextensions.v1.JSONSchemaPropsOrStringArray": lambda v: _or_list(v, strings=True),
}


# -- protobuf -> JSON ---------------------------------------------------------------------------
def decode_object(body: bytes) -> Obj:
    """The JSON shape of an enveloped body; raises ProtobufError for a kind without a message."""
    api_version, kind, raw = pb.unwrap(body)
    name = message_for(api_version, kind)
    if name is None:
        raise ProtobufError(f"protobuf is not supported for {kind or 'this kind'}")
    return {"apiVersion": api_version, "kind": kind, **decode(name, raw)}


def decode(name: str, data: bytes) -> Any:
    if name in _SPECIAL_DECODERS:
        return _SPECIAL_DECODERS[name](pb.fields(data))
    parsed = pb.fields(data)
    if name in _LISTS:
        return [_text(v) for _, v in parsed.get(1, [])]
    out: Obj = {}
    for field in messages()[name][1]:
        values = parsed.get(field[0])
        if values:
            _decode_field(out, field, values)
    return out


def _decode_field(out: Obj, field: Field, values: list[tuple[int, Any]]) -> None:
    _, json_name, type_name, label, flags = field[:5]
    if not json_name:
        out.update(_scalar(type_name, *values[-1]))
    elif label == "m":
        entries = [pb.fields(v) for _, v in values]
        out[json_name] = {_text(pb.last_bytes(e, 1)): _value(type_name, e.get(2, [])) for e in entries}
    elif label == "r":
        out[json_name] = _repeated(type_name, values)
    else:
        value = _scalar(type_name, *values[-1])
        if value is None:
            return
        if "p" in flags or not _is_zero(value) or (type_name in _SCALAR_ZERO and "o" not in flags):
            out[json_name] = value


def _value(type_name: str, values: list[tuple[int, Any]]) -> Any:
    return _scalar(type_name, *values[-1]) if values else _SCALAR_ZERO.get(type_name, {})


def _repeated(type_name: str, values: list[tuple[int, Any]]) -> list[Any]:
    out: list[Any] = []
    for wire, value in values:
        if wire == pb.LENGTH and type_name in _INTS | {"bool"}:
            pos = 0
            while pos < len(value):  # a packed run
                number, pos = pb.read_varint(value, pos)
                out.append(_scalar(type_name, pb.VARINT, number))
        else:
            out.append(_scalar(type_name, wire, value))
    return out


def _scalar(type_name: str, wire: int, value: Any) -> Any:
    if type_name == "string":
        return _text(value)
    if type_name == "bytes":
        return base64.b64encode(value).decode()
    if type_name == "bool":
        return bool(value)
    if type_name in ("int32", "int64"):
        return pb.signed(value) if isinstance(value, int) else 0
    if type_name in ("uint32", "uint64"):
        return value if isinstance(value, int) else 0
    if type_name in ("double", "float"):
        return struct.unpack("<d" if len(value) == 8 else "<f", value)[0]
    if wire != pb.LENGTH:
        raise ProtobufError(f"{type_name} sent with wire type {wire}")
    return decode(type_name, value)


def _text(value: Any) -> str:
    try:
        return bytes(value).decode()
    except (UnicodeDecodeError, TypeError) as e:
        raise ProtobufError("a string field is not UTF-8") from e


_SCALAR_ZERO: dict[str, Any] = {"string": "", "bool": False, "int32": 0, "int64": 0, "uint32": 0,
                                "uint64": 0, "double": 0.0, "float": 0.0, "bytes": ""}  # fmt: skip


def _is_zero(value: Any) -> bool:
    return value is None or value in ("", 0, False) or value == {} or value == []


def _decode_time(parsed: pb.Fields, micro: bool = False) -> str | None:
    seconds = pb.signed(_int(parsed, 1))
    nanos = _int(parsed, 2)
    if not seconds and not nanos:
        return None
    moment = datetime.fromtimestamp(seconds + nanos / 1e9, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def _int(parsed: pb.Fields, number: int) -> int:
    values = [v for wire, v in parsed.get(number, []) if wire == pb.VARINT]
    return int(values[-1]) if values else 0


def _decode_int_or_string(parsed: pb.Fields) -> int | str:
    if _int(parsed, 1) == 1:
        return pb.string(parsed, 3)
    return pb.signed(_int(parsed, 2))


def _decode_raw(parsed: pb.Fields) -> Any:
    raw = pb.last_bytes(parsed, 1)
    if raw.startswith(pb.MAGIC):
        return decode_object(raw)
    try:
        return json.loads(raw) if raw else {}
    except ValueError as e:
        raise ProtobufError("embedded raw object is not JSON") from e


def _decode_duration(parsed: pb.Fields) -> str:
    nanos = pb.signed(_int(parsed, 1))
    hours, rest = divmod(nanos, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = f"{rest / 1e9:g}"
    return (
        f"{hours}h{minutes}m{seconds}s" if hours else (f"{minutes}m{seconds}s" if minutes else f"{seconds}s")
    )


_SPECIAL_DECODERS = {
    "meta.v1.Time": _decode_time,
    "meta.v1.MicroTime": lambda p: _decode_time(p, micro=True),
    "meta.v1.Duration": _decode_duration,
    "intstr.IntOrString": _decode_int_or_string,
    "resource.Quantity": lambda p: pb.string(p, 1),
    "runtime.RawExtension": _decode_raw,
    "meta.v1.FieldsV1": _decode_raw,
    "apiextensions.v1.JSON": _decode_raw,
    "apiextensions.v1.JSONSchemaPropsOrBool": lambda p: (
        decode(_PROPS, pb.last_bytes(p, 2)) if 2 in p else bool(_int(p, 1))
    ),
    "apiextensions.v1.JSONSchemaPropsOrArray": lambda p: (
        decode(_PROPS, pb.last_bytes(p, 1)) if 1 in p else [decode(_PROPS, v) for _, v in p.get(2, [])]
    ),
    "apiextensions.v1.JSONSchemaPropsOrStringArray": lambda p: (
        decode(_PROPS, pb.last_bytes(p, 1)) if 1 in p else [_text(v) for _, v in p.get(2, [])]
    ),
}
