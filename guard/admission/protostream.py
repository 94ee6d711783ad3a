"""Count the items of a protobuf-encoded Kubernetes List as it streams by, chunk after chunk, without
keeping it: the same walk as guard.admission.protolist (the `k8s\\0` magic, a `runtime.Unknown` whose
`raw` (2) is the List, whose `items` (2) are counted and skipped), for answers too large to read whole.

Only what the counting needs is kept between chunks: a partial varint, how many bytes are left to
skip, and the few small fields it reads (`typeMeta`, `contentEncoding`, the List's `metadata`).
Pure: bytes in, a shape out; never raises on malformed input (the shape is then None).
"""

from __future__ import annotations

from guard.admission.protolist import MAGIC, ListShape, envelope_shape

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
KEPT = 4096
"""Largest small field kept (typeMeta, contentEncoding, ListMeta); a larger one is skipped unread."""


class StreamCounter:
    """Feed it a protobuf List body in pieces; `shape()` once it has all."""

    def __init__(self) -> None:
        self._head = b""
        self._offset = 0
        """Bytes consumed after the magic."""
        self._raw_end: int | None = None
        """Where the List message (Unknown.raw) ends, while inside it."""
        self._varint = 0
        self._shift = 0
        self._field = self._wire = 0
        self._state = "key"
        self._left = 0
        self._kept: dict[tuple[bool, int], bytearray] = {}
        self._keeping: bytearray | None = None
        self.items = 0
        self.broken = False

    def feed(self, data: bytes) -> None:
        if self.broken or not data:
            return
        view, pos = memoryview(data), 0
        if len(self._head) < len(MAGIC):
            pos = len(MAGIC) - len(self._head)
            self._head += bytes(view[:pos])
            if len(self._head) == len(MAGIC) and self._head != MAGIC:
                self.broken = True
        while pos < len(view) and not self.broken:
            pos = self._skip(view, pos) if self._state == "skip" else self._read_varint(view, pos)
            if self._raw_end is not None and self._offset >= self._raw_end and self._state == "key":
                self.broken = self._offset > self._raw_end
                self._raw_end = None

    def shape(self) -> ListShape | None:
        """The List's shape, or None when the body was not a whole, plain protobuf List."""
        if self.broken or self._state != "key" or self._raw_end is not None or self._head != MAGIC:
            return None
        return envelope_shape(bytes(self._kept.get((False, 1), b"")), bytes(self._kept.get((False, 3), b"")),
                              self.items, bytes(self._kept[True, 1]) if (True, 1) in self._kept else None)

    def _skip(self, view: memoryview, pos: int) -> int:
        n = min(self._left, len(view) - pos)
        if self._keeping is not None:
            self._keeping += view[pos:pos + n]
        self._left -= n
        self._offset += n
        if not self._left:
            self._state, self._keeping = "key", None
        return pos + n

    def _read_varint(self, view: memoryview, pos: int) -> int:
        byte = view[pos]
        self._offset += 1
        self._varint |= (byte & 0x7F) << self._shift
        self._shift += 7
        if byte & 0x80:
            self.broken = self._shift > 63
            return pos + 1
        value, self._varint, self._shift = self._varint, 0, 0
        if self._state == "key":
            self._key(value)
        elif self._state == "length":
            self._length(value)
        else:  # a varint field's value: nothing to keep
            self._state = "key"
        return pos + 1

    def _key(self, key: int) -> None:
        self._field, self._wire = key >> 3, key & 7
        if self._field == 0:
            self.broken = True
        elif self._wire == _VARINT:
            self._state = "value"
        elif self._wire == _BYTES:
            self._state = "length"
        elif self._wire in (_FIXED64, _FIXED32):
            self._state, self._left = "skip", 8 if self._wire == _FIXED64 else 4
        else:
            self.broken = True

    def _length(self, size: int) -> None:
        inside = self._raw_end is not None
        self._state = "key"
        if not inside and self._field == 2:
            self._raw_end = self._offset + size  # descend into the List message
            return
        if inside and self._field == 2:
            self.items += 1
        elif self._field in (1, 3) and size <= KEPT:
            self._keeping = self._kept[inside, self._field] = bytearray()
        if size:
            self._state, self._left = "skip", size
        else:
            self._keeping = None
