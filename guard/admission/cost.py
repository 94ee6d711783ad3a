"""What a request costs in tokens: 1 for most, more for a LIST by how many objects it returns.

The object count is the smaller of the request's `limit` and the count last observed for that
resource (whichever is known); a watch from "now" (resourceVersion unset or "0") costs its
initial list, a watch resuming from a resourceVersion costs 1. Pure: no clock, no I/O.
"""

from __future__ import annotations

from guard.kube.requestinfo import RequestInfo
from guard.policy.model import ListCost

_MAX_KEYS = 50_000


class ObjectCounts:
    """Objects last seen per (cluster, group, resource, namespace); namespace "" = cluster-wide."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str, str], int] = {}

    def observe(self, cluster: str, group: str, resource: str, namespace: str, count: int) -> None:
        if len(self._counts) >= _MAX_KEYS:
            self._counts.clear()  # bounded memory; counts are re-learned from the next LISTs
        self._counts[(cluster, group, resource, namespace)] = max(0, count)

    def get(self, cluster: str, info: RequestInfo) -> int | None:
        return self._counts.get((cluster, info.api_group, info.resource, info.namespace))


def _lists(info: RequestInfo) -> bool:
    if info.name or not info.is_resource_request:
        return False
    if info.verb == "list":
        return True
    return info.verb == "watch" and info.resource_version in ("", "0")


def request_cost(info: RequestInfo, price: ListCost, observed: int | None) -> float:
    """Tokens `info` costs under `price`, given the last observed object count (None = unknown)."""
    if not _lists(info):
        return 1.0
    known = [n for n in (info.limit or None, observed) if n is not None]
    objects = min(known) if known else 0
    return min(price.max, price.base + objects / price.per_objects)
