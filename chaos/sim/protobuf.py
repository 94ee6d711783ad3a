"""The api-server's protobuf envelope and wire format: `k8s\\0` + `runtime.Unknown`, varints, fields.

A body is the magic `k8s\\0` then a `runtime.Unknown` {1 typeMeta {1 apiVersion, 2 kind}, 2 raw,
3 contentEncoding, 4 contentType}; `raw` is the object's own message, which `chaos.sim.protojson`
maps to and from JSON by the generated schema. A watch stream frames each `WatchEvent` {1 type,
2 object {1 raw}} with a 4-byte big-endian length and no magic; the embedded object keeps its own.
This module must never know a Kubernetes kind: it moves bytes and field numbers.
"""

from __future__ import annotations

import struct
from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
WATCH_CONTENT_TYPE = "application/vnd.kubernetes.protobuf;stream=watch"
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
Fields = dict[int, list[tuple[int, Any]]]
"""Field number -> every (wire type, value) seen, in order; value is an int or bytes."""


class ProtobufError(ValueError):
    """The bytes are not a protobuf message this simulator can read."""


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos
        if shift > 70:
            raise ProtobufError("varint too long")


def fields(data: bytes) -> Fields:
    """Every field of one message; raises ProtobufError on truncation or an unknown wire type."""
    out: Fields = {}
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire == VARINT:
            value, pos = read_varint(data, pos)
        elif wire == LENGTH:
            size, pos = read_varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError("truncated length-delimited field")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (FIXED64, FIXED32):
            width = 8 if wire == FIXED64 else 4
            if pos + width > len(data):
                raise ProtobufError("truncated fixed-width field")
            value, pos = data[pos : pos + width], pos + width
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.setdefault(number, []).append((wire, value))
    return out


def varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # negative int32/int64 take ten bytes, as in Go
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def length_field(number: int, payload: bytes) -> bytes:
    return tag(number, LENGTH) + varint(len(payload)) + payload


def varint_field(number: int, value: int) -> bytes:
    return tag(number, VARINT) + varint(value)


def double_field(number: int, value: float, *, width: int = 8) -> bytes:
    if width == 4:
        return tag(number, FIXED32) + struct.pack("<f", value)
    return tag(number, FIXED64) + struct.pack("<d", value)


def signed(value: int, bits: int = 64) -> int:
    """A varint read back as Go's int32/int64."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def last_bytes(parsed: Fields, number: int) -> bytes:
    values = [v for wire, v in parsed.get(number, []) if wire == LENGTH]
    return values[-1] if values else b""


def string(parsed: Fields, number: int) -> str:
    try:
        return last_bytes(parsed, number).decode()
    except UnicodeDecodeError as e:
        raise ProtobufError(f"field {number} is not UTF-8") from e


def unwrap(body: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, raw) of an enveloped body."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    unknown = fields(body[len(MAGIC) :])
    type_meta = fields(last_bytes(unknown, 1))
    return string(type_meta, 1), string(type_meta, 2), last_bytes(unknown, 2)


def wrap(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = length_field(1, api_version.encode()) + length_field(2, kind.encode())
    unknown = length_field(1, type_meta) + length_field(2, raw) + length_field(3, b"") + length_field(4, b"")
    return MAGIC + unknown


def watch_frame(event_type: str, embedded: bytes) -> bytes:
    """One length-prefixed frame of a protobuf watch: WatchEvent {type, object {raw}}."""
    event = length_field(1, event_type.encode()) + length_field(2, length_field(1, embedded))
    return struct.pack(">I", len(event)) + event
