"""What guard learns about object counts and sizes from the answers it relays, to price the next
LISTs (guard.admission.listsize holds the counting; admission the counts). Only a 200 answer teaches,
a LIST only when it shows the whole current collection, a GET of one object only its size. It must
never keep a body beyond the call.
"""

from __future__ import annotations

from collections.abc import Callable

from guard.admission.decision import Admission
from guard.admission.listsize import ListSizer, encoding_of, learnable
from guard.http import client
from guard.kube.requestinfo import RequestInfo


class ObjectSizes:
    """The request path's side of LIST pricing: read answers, tell admission the counts."""

    def __init__(self, admission: Callable[[], Admission]) -> None:
        self._admission = admission
        self._sizer = ListSizer()

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
