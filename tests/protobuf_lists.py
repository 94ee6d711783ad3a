"""Kubernetes protobuf List bodies built by hand, for the tests of guard's item counter. Import:
`from tests.protobuf_lists import proto_list, pod`. Field numbers: apimachinery runtime/generated.proto
(Unknown: typeMeta 1, raw 2, contentEncoding 3, contentType 4; TypeMeta: apiVersion 1, kind 2),
meta/v1 ListMeta (resourceVersion 2, continue 3, remainingItemCount 4), every List: metadata 1, items 2.
"""

from __future__ import annotations


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def pod(name: str, padding: int = 40) -> bytes:
    """A Pod message: metadata (ObjectMeta: name = 1) and a spec of some bytes."""
    return field(1, field(1, name.encode())) + field(2, b"\x0a" + varint(padding) + b"x" * padding)


def proto_list(items: list[bytes], *, kind: str = "PodList", remaining: int | None = None,
               cont: str = "", encoding: str = "") -> bytes:
    meta = field(2, b"12345") + (field(3, cont.encode()) if cont else b"")
    if remaining is not None:
        meta += varint(4 << 3 | 0) + varint(remaining)
    raw = field(1, meta) + b"".join(field(2, item) for item in items)
    type_meta = field(1, b"v1") + field(2, kind.encode())
    envelope = field(1, type_meta) + field(2, raw) + (field(3, encoding.encode()) if encoding else b"")
    return b"k8s\x00" + envelope + field(4, b"")
