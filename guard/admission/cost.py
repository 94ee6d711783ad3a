"""What a request costs in tokens: 1 for most, more for a LIST by the objects the api-server
processes to answer it, counted as its API Priority and Fairness list work estimator counts them
(k8s.io/apiserver/pkg/util/flowcontrol/request/list_work_estimator.go, count-based):

- a LIST naming one object (`fieldSelector=metadata.name=x`) processes 1;
- one the watch cache serves (resourceVersion "0" or any resourceVersion without a limit,
  resourceVersionMatch=NotOlderThan, a watch's initial list) processes every stored object, whatever
  its `limit` — the cache ignores it;
- one etcd serves (a `continue` page, resourceVersionMatch=Exact, a limit with a resourceVersion)
  processes twice its page, or every stored object plus its page when it carries a selector;
- a consistent LIST (no resourceVersion) is served by the watch cache, as api-servers with
  ConsistentListFromCache (on by default since 1.31) serve it.

A watch costs its initial list when it has one (`sendInitialEvents=true`, which WatchList informers
send, or resourceVersion "" / "0", from which the api-server replays the whole state), else 1. The
stored count is the last one guard learnt for the resource (`guard.admission.listsize`), the
cluster-wide count for a namespace never measured, else the rule's conservative `unmeasured`.
Pure: no clock, no I/O.
"""

from __future__ import annotations

from guard.kube.requestinfo import RequestInfo
from guard.policy.model import ListCost

_MAX_KEYS = 50_000


class ObjectCounts:
    """Objects last seen per (cluster, group, resource, namespace); namespace "" = cluster-wide.

    A count may fall by at most half per observation, so one odd answer cannot make a large
    collection look empty; it rises at once."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str, str], int] = {}

    def observe(self, cluster: str, group: str, resource: str, namespace: str, count: int) -> None:
        key = (cluster, group, resource, namespace)
        old = self._counts.get(key)
        if old is None and len(self._counts) >= _MAX_KEYS:
            self._counts.clear()  # bounded memory; counts are re-learned from the next LISTs
        count = max(0, count)
        self._counts[key] = count if old is None else max(count, old // 2)

    def get(self, cluster: str, info: RequestInfo) -> int | None:
        found = self._counts.get((cluster, info.api_group, info.resource, info.namespace))
        if found is None and info.namespace:
            found = self._counts.get((cluster, info.api_group, info.resource, ""))
        return found


def initial_list(info: RequestInfo) -> bool:
    """A watch that first delivers the whole collection."""
    return info.send_initial_events or info.resource_version in ("", "0")


def _from_storage(info: RequestInfo) -> bool:
    """True: etcd serves it (delegator.ShouldDelegateList); False: the watch cache does."""
    match = info.resource_version_match
    if match == "NotOlderThan":
        return False
    if match:
        return True  # Exact, or a value the api-server will refuse
    return info.has_continue or (info.limit > 0 and info.resource_version not in ("", "0"))


def objects(info: RequestInfo, stored: int) -> int:
    """Objects the api-server's list work estimator counts for a LIST or watch of `info`."""
    if info.name:
        return 1
    if info.verb == "watch":
        return stored if initial_list(info) else 0
    page = info.limit if 0 < info.limit < stored else stored
    selected = bool(info.label_selector or info.field_selector)
    if not _from_storage(info):
        return stored
    return stored + page if selected else 2 * page


def request_cost(info: RequestInfo, price: ListCost, observed: int | None) -> float:
    """Tokens `info` costs under `price`, given the object count learnt for it (None = never)."""
    if not info.is_resource_request or info.verb not in ("list", "watch") or info.name:
        return 1.0
    stored = observed if observed is not None else price.unmeasured
    counted = objects(info, stored)
    if counted == 0:
        return 1.0
    return min(price.max, price.base + counted / price.per_objects)
