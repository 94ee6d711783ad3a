"""Watch: a chunked stream of `{"type": ..., "object": ...}` lines, one per change.

Without a resourceVersion (or with "0") it starts with an ADDED event per current object; with one,
it replays the window's events after it, or sends a 410 `Expired` ERROR event when the version has
left the window. With allowWatchBookmarks it sends BOOKMARK events after the initial state and then
periodically. It ends at timeoutSeconds, when the client goes away, or when the replica dies. Selectors
are applied to each event's object (an object leaving the selection is not turned into DELETED, a
known simplification). It must never block the store: events wait in the watcher's own queue.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from chaos.sim import protobuf, protojson, wire
from chaos.sim.calls import Call
from chaos.sim.reads import selected
from chaos.sim.selectors import matches, parse_fields, parse_labels
from chaos.sim.status import StatusError, bad_request, status_body
from chaos.sim.store import Event
from chaos.sim.tables import to_table, wants_table

Obj = dict[str, Any]
DEFAULT_TIMEOUT_S = 1800.0
POLL_S = 1.0
"""How often an idle watch checks that its client is still there."""


class _Stream:
    def __init__(self, call: Call, response: web.StreamResponse) -> None:
        self.call, self.response = call, response
        self.table = wants_table(call.request.headers.get("Accept", ""))
        self.include = call.query.get("includeObject", "Metadata")
        self.protobuf = _content_type(call) == protobuf.WATCH_CONTENT_TYPE

    async def send(self, type_: str, obj: Obj) -> None:
        if self.table and type_ in ("ADDED", "MODIFIED", "DELETED"):
            obj = to_table(
                self.call.kind.kind,
                [obj],
                resource_version=obj["metadata"]["resourceVersion"],
                include=self.include,
            )
        if self.protobuf:
            embedded = protojson.encode_object(obj)
            if embedded is not None:
                await self.response.write(protobuf.watch_frame(type_, embedded))
                return
        line = json.dumps({"type": type_, "object": obj}, separators=(",", ":"))  # Go's spelling
        await self.response.write(line.encode() + b"\n")

    async def bookmark(self) -> None:
        kind = self.call.kind
        await self.send(
            "BOOKMARK",
            {
                "kind": kind.kind,
                "apiVersion": kind.api_version,
                "metadata": {"resourceVersion": str(self.call.sim.store.rv)},
            },
        )


def _timeout(call: Call) -> float:
    try:
        return float(call.query.get("timeoutSeconds") or DEFAULT_TIMEOUT_S)
    except ValueError as e:
        raise bad_request("timeoutSeconds must be an integer") from e


def _start_rv(call: Call) -> int | None:
    raw = call.query.get("resourceVersion", "")
    if raw in ("", "0"):
        return None
    try:
        return int(raw)
    except ValueError as e:
        raise bad_request(f"invalid resource version: {raw!r}") from e


def _gone(call: Call) -> bool:
    transport = call.request.transport
    return transport is None or transport.is_closing()


async def watch(call: Call) -> web.StreamResponse:
    store = call.sim.store
    labels = parse_labels(call.query.get("labelSelector"))
    fields = parse_fields(call.query.get("fieldSelector"), call.kind.kind)
    deadline = time.monotonic() + _timeout(call)
    bookmarks = call.query.get("allowWatchBookmarks", "").lower() == "true"
    bookmark_every = call.sim.options.bookmark_interval_s
    start = _start_rv(call)
    watcher = store.subscribe(call.kind)  # before the snapshot, so no change falls between them
    try:
        initial: list[tuple[str, Obj]] = []
        expired: StatusError | None = None
        if start is None:
            initial = [("ADDED", obj) for obj in selected(call)]
            last = store.rv
        else:
            try:
                initial = [(e.type, e.obj) for e in store.events_since(call.kind, start) if _wanted(call, e)]
            except StatusError as e:
                expired = e
            last = store.rv
        encoding = _content_type(call)
        response = web.StreamResponse(
            headers={"Content-Type": encoding, "Cache-Control": "no-cache, private"}
        )
        response.enable_chunked_encoding()
        await response.prepare(call.request)
        stream = _Stream(call, response)
        if expired is not None:
            await stream.send("ERROR", status_body(410, expired.body["message"], reason="Expired"))
            return response
        for type_, obj in initial:
            if matches(obj, labels, fields):
                await stream.send(type_, obj)
        try:
            if bookmarks:
                await stream.bookmark()
            await _follow(call, stream, watcher.queue, last, deadline, bookmark_every if bookmarks else 0.0)
        except ConnectionError:
            pass  # the client went away (or its replica crashed): the watch simply ends
        return response
    finally:
        store.unsubscribe(watcher)


def _content_type(call: Call) -> str:
    accept = call.request.headers.get("Accept", "")
    if not wants_table(accept) and wire.wants_protobuf(accept) and _has_message(call):
        return protobuf.WATCH_CONTENT_TYPE
    return "application/json"


def _has_message(call: Call) -> bool:
    return protojson.message_for(call.kind.api_version, call.kind.kind) is not None


def _wanted(call: Call, event: Event) -> bool:
    namespace = call.namespace
    return not namespace or event.obj["metadata"].get("namespace") == namespace


async def _follow(
    call: Call,
    stream: _Stream,
    queue: asyncio.Queue[Event],
    last: int,
    deadline: float,
    bookmark_every: float,
) -> None:
    labels = parse_labels(call.query.get("labelSelector"))
    fields = parse_fields(call.query.get("fieldSelector"), call.kind.kind)
    next_bookmark = time.monotonic() + bookmark_every
    while (now := time.monotonic()) < deadline and not _gone(call):
        wait = min(deadline - now, POLL_S, (next_bookmark - now) if bookmark_every else POLL_S)
        try:
            event = await asyncio.wait_for(queue.get(), timeout=max(wait, 0.0))
        except TimeoutError:
            if bookmark_every and time.monotonic() >= next_bookmark:
                await stream.bookmark()
                next_bookmark = time.monotonic() + bookmark_every
            continue
        if event.rv <= last or not _wanted(call, event) or not matches(event.obj, labels, fields):
            continue
        await stream.send(event.type, event.obj)
