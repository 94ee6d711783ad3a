"""Count the items of a protobuf-encoded Kubernetes List without decoding a single object.

client-go controllers ask for `application/vnd.kubernetes.protobuf`. Such a body is the magic
`k8s\\0`, then a `runtime.Unknown` (apimachinery runtime/generated.proto): `typeMeta` = 1 (its
`kind` = 2), `raw` = 2, `contentEncoding` = 3. `raw` is the List message; every List of
kubernetes/api and meta/v1 (PodList, ..., PartialObjectMetadataList) has `metadata` (ListMeta) = 1
and `items` = 2, and ListMeta has `continue` = 3 and `remainingItemCount` = 4. Each item is one
length-delimited field 2, so counting is a walk over tags and lengths that skips every item's bytes.

Pure: bytes in, numbers out; never raises on malformed input (it answers None), never keeps a body.
"""

from __future__ import annotations

from dataclasses import dataclass

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class ListShape:
    """What a protobuf List body says about its size."""

    items: int
    remaining: int | None = None
    """`metadata.remainingItemCount` when the page carries one."""
    continues: bool = False
    """`metadata.continue` is set: more pages follow."""


class _Malformed(Exception):
    pass


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _fields(data: memoryview) -> list[tuple[int, int, int, int]]:
    """(field number, wire type, start, end) of each top-level field; the value of a varint field
    is at [start, end) too. Raises _Malformed on a truncated or unknown encoding."""
    out = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        start = pos
        if wire == _VARINT:
            _, pos = _varint(data, pos)
        elif wire == _BYTES:
            size, start = _varint(data, pos)
            pos = start + size
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
        else:
            raise _Malformed
        if pos > len(data) or number == 0:
            raise _Malformed
        out.append((number, wire, start, pos))
    return out


def _count_items(data: memoryview) -> tuple[int, memoryview | None]:
    """Items of a List message, and its ListMeta's bytes; skips each item without a look inside."""
    items, meta, pos = 0, None, 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _BYTES:
            size, start = _varint(data, pos)
            pos = start + size
            if number == 2:
                items += 1
            elif number == 1:
                meta = data[start:pos]
        elif wire == _VARINT:
            _, pos = _varint(data, pos)
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
        else:
            raise _Malformed
        if pos > len(data):
            raise _Malformed
    return items, meta


def _kind(data: memoryview) -> str:
    for number, wire, start, end in _fields(data):
        if number == 2 and wire == _BYTES:
            return bytes(data[start:end]).decode("utf-8", "replace")
    return ""


def list_shape(body: bytes) -> ListShape | None:
    """The shape of a protobuf List `body`, or None when it is not one (another kind, an encoded
    `raw`, a truncated or malformed message)."""
    if not body.startswith(MAGIC):
        return None
    view = memoryview(body)[len(MAGIC):]
    try:
        parts = {number: (wire, start, end) for number, wire, start, end in _fields(view)}
        type_meta, raw, encoding = parts.get(1), parts.get(2), parts.get(3)
        if type_meta is None or raw is None or raw[0] != _BYTES or type_meta[0] != _BYTES:
            return None
        items, meta = _count_items(view[raw[1]:raw[2]])
    except _Malformed:
        return None
    encoded = bytes(view[encoding[1]:encoding[2]]) if encoding is not None else b""
    return envelope_shape(bytes(view[type_meta[1]:type_meta[2]]), encoded, items,
                          bytes(meta) if meta is not None else None)


def envelope_shape(type_meta: bytes, content_encoding: bytes, items: int,
                   meta: bytes | None) -> ListShape | None:
    """A List's shape from its envelope's parts (whole or streamed): None unless `typeMeta` names a
    List kind and `raw` is not encoded (compressed)."""
    try:
        if content_encoding or not _kind(memoryview(type_meta)).endswith("List"):
            return None
        remaining, continues = _list_meta(memoryview(meta)) if meta is not None else (None, False)
    except _Malformed:
        return None
    return ListShape(items, remaining, continues)


def _list_meta(meta: memoryview) -> tuple[int | None, bool]:
    remaining, continues = None, False
    for number, wire, start, end in _fields(meta):
        if number == 4 and wire == _VARINT:
            value = _varint(meta, start)[0]
            remaining = value if value < 1 << 63 else None  # a negative int64 is no count
        elif number == 3 and wire == _BYTES:
            continues = end > start
    return remaining, continues
