"""What guard learns about object counts and sizes from the answers it relays, to price the next
LISTs (guard.admission.listsize holds the counting; admission the counts). Only a 200 answer teaches,
a LIST only when it shows the whole current collection, a GET of one object only its size. It must
never keep a body beyond the call.
"""

from __future__ import annotations

from collections.abc import Callable

from guard.admission.decision import Admission
from guard.admission.listsize import PROTOBUF, ListSizer, encoding_of, learnable
from guard.admission.protostream import StreamCounter
from guard.http import client
from guard.http.relay import SMALL_BODY
from guard.kube.requestinfo import RequestInfo


class ObjectSizes:
    """The request path's side of LIST pricing: read answers, tell admission the counts."""

    def __init__(self, admission: Callable[[], Admission]) -> None:
        self._admission = admission
        self._sizer = ListSizer()

    def counter(self, method: str, info: RequestInfo, cluster: str,
                upstream: client.Response) -> StreamCounter | None:
        """A counter to feed a protobuf LIST answer as it streams to the client, when the answer is
        learnable, measured now, and too large to be read whole (None otherwise: nothing to do)."""
        length = upstream.content_length
        if (upstream.status != 200 or encoding_of(upstream.content_type) != PROTOBUF
                or (length is not None and length <= SMALL_BODY) or not learnable(method, info)
                or not self._sizer.due(cluster, info)):
            return None
        return StreamCounter()

    def counted(self, info: RequestInfo, cluster: str, counter: StreamCounter) -> None:
        """Tell admission what a streamed protobuf LIST held, once it has passed whole."""
        shape = counter.shape()
        if shape is None or (shape.continues and shape.remaining is None):
            return
        self._admission().observe_list(cluster, info, shape.items + (shape.remaining or 0))

    def learn(self, method: str, info: RequestInfo, cluster: str, upstream: client.Response,
              body: bytes | None, sent: int) -> None:
        """Learn from one relayed 200 answer (`body` when it was read whole, `sent` bytes)."""
        encoding = encoding_of(upstream.content_type)
        table = "as=Table" in upstream.headers.get("Content-Type", "")
        if encoding is None or method != "GET":
            return
        if info.verb == "list":
            self._list(info, cluster, body, sent, encoding, table=table)
        elif info.verb == "get" and info.name and not info.subresource and body is not None and not table:
            self._sizer.one_object(cluster, info, body, encoding=encoding)  # prices streamed LISTs

    def _list(self, info: RequestInfo, cluster: str, body: bytes | None, sent: int, encoding: str, *,
              table: bool) -> None:
        """An exact count of a small JSON or protobuf body, an estimate for a streamed one; only GETs
        of the whole collection as it stands teach anything."""
        if not learnable("GET", info) or not self._sizer.due(cluster, info):
            return
        if body is not None:
            count = self._sizer.whole(cluster, info, body, encoding=encoding)
        elif table:
            count = None  # a Table row is not an object: the learnt object size does not apply
        else:
            count = self._sizer.streamed(cluster, info, sent, encoding=encoding)
        if count is not None:
            self._admission().observe_list(cluster, info, count)
