"""Just enough of the api-server's protobuf encoding to read the review requests kubectl sends as
`application/vnd.kubernetes.protobuf` (SelfSubjectAccessReview for `auth can-i`, SelfSubjectReview
for `auth whoami`, SubjectAccessReview, TokenReview).

A body is the magic `k8s\\0` then a `runtime.Unknown` (typeMeta, raw); `raw` is the object. Answers
go back as JSON, which kubectl also accepts. It must never be used for kinds without a schema here:
those get 415 from the caller.
"""

from __future__ import annotations

from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
Fields = dict[int, list[Any]]

# message -> field number -> (json name, sub-message or "string"/"strings"/"bool"/"extra")
_RESOURCE_ATTRIBUTES = {
    1: ("namespace", "string"),
    2: ("verb", "string"),
    3: ("group", "string"),
    4: ("version", "string"),
    5: ("resource", "string"),
    6: ("subresource", "string"),
    7: ("name", "string"),
}
_NON_RESOURCE_ATTRIBUTES = {1: ("path", "string"), 2: ("verb", "string")}
_SAR_SPEC = {
    1: ("resourceAttributes", _RESOURCE_ATTRIBUTES),
    2: ("nonResourceAttributes", _NON_RESOURCE_ATTRIBUTES),
    3: ("user", "string"),
    4: ("groups", "strings"),
    5: ("extra", "extra"),
    6: ("uid", "string"),
}
_SSAR_SPEC = {
    1: ("resourceAttributes", _RESOURCE_ATTRIBUTES),
    2: ("nonResourceAttributes", _NON_RESOURCE_ATTRIBUTES),
}
_TOKEN_REVIEW_SPEC = {1: ("token", "string"), 2: ("audiences", "strings")}
_META = {1: ("name", "string"), 3: ("namespace", "string")}
SCHEMAS: dict[str, dict[int, tuple[str, Any]]] = {
    "SubjectAccessReview": {1: ("metadata", _META), 2: ("spec", _SAR_SPEC)},
    "LocalSubjectAccessReview": {1: ("metadata", _META), 2: ("spec", _SAR_SPEC)},
    "SelfSubjectAccessReview": {1: ("metadata", _META), 2: ("spec", _SSAR_SPEC)},
    "SelfSubjectReview": {1: ("metadata", _META)},
    "TokenReview": {1: ("metadata", _META), 2: ("spec", _TOKEN_REVIEW_SPEC)},
}


class ProtobufError(ValueError):
    """The body is not a protobuf message this module can read."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def fields(data: bytes) -> Fields:
    out: Fields = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = data[pos : pos + width], pos + width
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def _extra(entries: list[bytes]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for entry in entries:
        pair = fields(entry)
        key = pair.get(1, [b""])[0].decode()
        values = fields(pair.get(2, [b""])[0]).get(1, [])
        out[key] = [v.decode() for v in values]
    return out


def decode(data: bytes, schema: dict[int, tuple[str, Any]]) -> dict[str, Any]:
    parsed, out = fields(data), {}
    for number, (name, kind) in schema.items():
        values = parsed.get(number)
        if not values:
            continue
        if kind == "string":
            out[name] = values[-1].decode()
        elif kind == "strings":
            out[name] = [v.decode() for v in values]
        elif kind == "extra":
            out[name] = _extra(values)
        else:
            out[name] = decode(values[-1], kind)
    return out


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON shape of a protobuf-encoded review; raises ProtobufError for anything else."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    unknown = fields(body[len(MAGIC) :])
    type_meta = fields(unknown.get(1, [b""])[0])
    api_version = type_meta.get(1, [b""])[0].decode()
    kind = type_meta.get(2, [b""])[0].decode()
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise ProtobufError(f"protobuf is not supported for {kind or 'this kind'}")
    return {"apiVersion": api_version, "kind": kind, **decode(unknown.get(2, [b""])[0], schema)}
