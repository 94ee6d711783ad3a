"""How many objects a LIST returned, learnt cheaply from responses guard relays, to price LISTs.

A small response (one the forwarder read whole) is counted exactly: a JSON body by scanning its
bytes for a marker each object carries once — never parsed —, a protobuf body by walking the List's
fields and skipping each item (`guard.admission.protolist`). A streamed one is estimated from its
byte count with the resource's average object size in that encoding, learnt from the small ones.
`metadata.remainingItemCount` of a first page adds what the page left out.

A count is learnt only from what no caller can bend: a GET (a HEAD has no body) answered 200, of
the whole collection as it stands now — no selector, no `continue`, and resourceVersion "" or "0"
or resourceVersionMatch=NotOlderThan (an exact, older snapshot may be smaller). Each resource is
measured at most once per `interval`, so a LIST flood pays a dict lookup, not a scan. Pure: bytes
in, numbers out; no I/O, clock injected; it must never keep a body beyond the call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from guard.admission import protolist
from guard.kube.requestinfo import RequestInfo

HEAD = 1024
"""Bytes at the start of a body where list metadata (kind, remainingItemCount) sits."""
_MAX_KEYS = 10_000
_SMOOTHING = 0.3  # weight of the newest size sample in the running average
JSON, PROTOBUF = "json", "protobuf"


def encoding_of(content_type: str) -> str | None:
    """JSON or PROTOBUF for a LIST answer's media type (parameters ignored); None for others."""
    media = content_type.partition(";")[0].strip().lower()
    if media == protolist.CONTENT_TYPE:
        return PROTOBUF
    return JSON if media == "application/json" or media.endswith("+json") else None


def count_objects(body: bytes) -> int:
    """Objects in a JSON List or Table body: each object (or row) has one `resourceVersion`
    (`cells`), and a List's own metadata has one more."""
    if b'"Table"' in body[:HEAD]:
        return body.count(b'"cells":')
    return max(0, body.count(b'"resourceVersion":') - 1)


def remaining_items(body: bytes) -> int | None:
    """`metadata.remainingItemCount` when the body's head carries one."""
    head = body[:HEAD]
    at = head.find(b'"remainingItemCount":')
    if at < 0:
        return None
    digits = head[at + 21:at + 40].lstrip(b" ")
    end = 0
    while end < len(digits) and 48 <= digits[end] <= 57:
        end += 1
    return int(digits[:end]) if end else None


def _continues(body: bytes) -> bool:
    """True when the page says more follows (a non-empty `continue` token)."""
    head = body[:HEAD]
    at = head.find(b'"continue":')
    return at >= 0 and not head[at + 11:at + 16].lstrip(b" ").startswith(b'""')


def learnable(method: str, info: RequestInfo) -> bool:
    """Whether a 200 answer to this request shows the whole collection as it stands now."""
    return (method == "GET" and info.verb == "list" and not info.name
            and not (info.label_selector or info.field_selector or info.has_continue)
            and (info.resource_version_match == "NotOlderThan"
                 or (not info.resource_version_match and info.resource_version in ("", "0"))))


class ListSizer:
    """Per-resource object counts and average object sizes, from observed LIST responses."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, interval: float = 1.0) -> None:
        self._clock = clock
        self._interval = interval
        self._last: dict[tuple[str, str, str, str], float] = {}
        self._size: dict[tuple[str, str, str, str], float] = {}  # average bytes per object

    def due(self, cluster: str, info: RequestInfo) -> bool:
        """True when this resource has not been measured within `interval` (and marks it measured)."""
        key = (cluster, info.api_group, info.resource, info.namespace)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            return False
        if len(self._last) >= _MAX_KEYS:
            self._last.clear()
        self._last[key] = now
        return True

    def whole(self, cluster: str, info: RequestInfo, body: bytes, *, encoding: str = JSON) -> int | None:
        """The count to record for a learnable LIST answered with `body` (read whole), or None."""
        if encoding == PROTOBUF:
            shape = protolist.list_shape(body)
            if shape is None:
                return None
            count, remaining, continues = shape.items, shape.remaining, shape.continues
        else:
            count, remaining, continues = count_objects(body), remaining_items(body), _continues(body)
            if b'"Table"' in body[:HEAD]:
                encoding = ""  # a row is not an object: its size teaches nothing
        if count and encoding:
            self._learn(cluster, info, encoding, len(body) / count)
        if remaining is not None:
            return count + remaining
        return None if continues else count

    def one_object(self, cluster: str, info: RequestInfo, body: bytes, *, encoding: str = JSON) -> None:
        """Learn the resource's object size from a GET of one object read whole, so a streamed LIST
        of a resource never listed small can still be estimated."""
        if body and not self._size.get((cluster, info.api_group, info.resource, encoding)):
            self._learn(cluster, info, encoding, float(len(body)))

    def streamed(self, cluster: str, info: RequestInfo, size: int, *, encoding: str = JSON) -> int | None:
        """An estimate for a streamed learnable LIST of `size` bytes, or None when nothing fits."""
        if info.limit:
            return None
        average = self._size.get((cluster, info.api_group, info.resource, encoding))
        return None if not average else round(size / average)

    def _learn(self, cluster: str, info: RequestInfo, encoding: str, per_object: float) -> None:
        key = (cluster, info.api_group, info.resource, encoding)
        old = self._size.get(key)
        if old is None and len(self._size) >= _MAX_KEYS:
            self._size.clear()
        self._size[key] = per_object if old is None else old + _SMOOTHING * (per_object - old)
