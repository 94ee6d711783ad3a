"""GET, LIST (with selectors and limit/continue pagination) and DELETECOLLECTION.

A list answers at the store's current resourceVersion; a continue token remembers the first page's
resourceVersion and answers 410 Expired once that version has left the watch window, as etcd's
compaction does on a real cluster. It must never hand out the stored dicts for mutation.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aiohttp import web

from chaos.sim.calls import Call, respond
from chaos.sim.scale import to_scale
from chaos.sim.selectors import SelectorError, matches, parse_fields, parse_labels
from chaos.sim.status import bad_request, expired
from chaos.sim.tables import to_table, wants_table
from chaos.sim.writes import delete_object

Obj = dict[str, Any]
_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this response "
    "to retrieve the remainder of the results."
)


def selected(call: Call) -> list[Obj]:
    try:
        labels = parse_labels(call.query.get("labelSelector"))
        fields = parse_fields(call.query.get("fieldSelector"), call.kind.kind)
    except SelectorError as e:
        raise bad_request(f"unable to parse requirement: {e}" if "parse" not in str(e) else str(e)) from e
    return [obj for _, obj in call.sim.store.items(call.kind, call.namespace) if matches(obj, labels, fields)]


def _encode(rv: int, key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(
        json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": list(key)}).encode()
    ).decode()


def _decode(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
    except (binascii.Error, ValueError, KeyError, IndexError, TypeError) as e:
        raise bad_request(f"continue key is not valid: {e}") from e


def _key(obj: Obj) -> tuple[str, str]:
    return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def _limit(call: Call) -> int:
    try:
        return max(0, int(call.query.get("limit") or 0))
    except ValueError as e:
        raise bad_request(f"invalid limit: {call.query.get('limit')!r}") from e


def page(call: Call) -> tuple[list[Obj], int, str, int | None]:
    """(items, resourceVersion, continue token, remainingItemCount) of one LIST page."""
    store, items = call.sim.store, selected(call)
    rv = store.rv
    token = call.query.get("continue")
    if token:
        rv, start = _decode(token)
        if rv < store.oldest_resumable():
            raise expired(_TOO_OLD)
        items = [obj for obj in items if _key(obj) > start]
    limit = _limit(call)
    if not limit or len(items) <= limit:
        return items, rv, "", None
    return items[:limit], rv, _encode(rv, _key(items[limit - 1])), len(items) - limit


def _wants_table(call: Call) -> bool:
    return wants_table(call.request.headers.get("Accept", ""))


async def list_(call: Call, load: Any | None) -> Any:
    items, rv, cont, remaining = page(call)
    if _wants_table(call):
        body = to_table(
            call.kind.kind,
            items,
            resource_version=str(rv),
            cont=cont,
            remaining=remaining,
            include=call.query.get("includeObject", "Metadata"),
        )
    else:
        meta: Obj = {"resourceVersion": str(rv)}
        if cont:
            meta.update({"continue": cont, "remainingItemCount": remaining})
        body = {
            "kind": f"{call.kind.kind}List",
            "apiVersion": call.kind.api_version,
            "metadata": meta,
            "items": items,
        }
    text = json.dumps(body)
    if load is not None:
        await load.serve_list(len(items), len(text))
    return respond_text(text)


def respond_text(text: str) -> web.Response:
    return web.Response(text=text, content_type="application/json")


async def get(call: Call) -> Any:
    obj = call.sim.store.get(call.kind, call.namespace, call.target.name)
    if call.target.subresource == "scale":
        return respond(to_scale(obj))
    if _wants_table(call) and not call.target.subresource:
        return respond(
            to_table(
                call.kind.kind,
                [obj],
                resource_version=obj["metadata"]["resourceVersion"],
                include=call.query.get("includeObject", "Metadata"),
            )
        )
    return respond(obj)


async def delete_collection(call: Call) -> Any:
    items = selected(call)
    deleted = [delete_object(call, call.kind, *_key(obj)) for obj in items]
    return respond(
        {
            "kind": f"{call.kind.kind}List",
            "apiVersion": call.kind.api_version,
            "metadata": {"resourceVersion": str(call.sim.store.rv)},
            "items": deleted,
        }
    )
