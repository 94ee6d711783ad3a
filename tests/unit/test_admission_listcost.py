"""LIST pricing (issue 13, item 2): objects counted as the api-server's APF list work estimator counts
them, learnt only from answers no caller can bend, conservative for what was never measured, and
protobuf LISTs counted item by item without decoding one object."""

from __future__ import annotations

import json

import pytest

from guard.admission.cost import ObjectCounts, objects, request_cost
from guard.admission.listsize import ListSizer, encoding_of, learnable
from guard.admission.protolist import ListShape, list_shape
from guard.kube.requestinfo import classify
from guard.policy.model import ListCost
from tests.protobuf_lists import field, pod, proto_list

PODS = "/api/v1/namespaces/a/pods"

# query, objects the estimator counts with 5,000 pods stored (limit 500 where given)
ESTIMATES: list[tuple[dict[str, str], int]] = [
    ({}, 5000),  # a consistent read: from the cache (ConsistentListFromCache)
    ({"resourceVersion": "0"}, 5000),  # the watch cache ignores limit
    ({"resourceVersion": "0", "limit": "1"}, 5000),
    ({"resourceVersion": "0", "labelSelector": "app=x"}, 5000),  # the cache filters in memory
    ({"resourceVersion": "123"}, 5000),  # no limit: from the cache
    ({"resourceVersion": "123", "limit": "500"}, 1000),  # legacy exact: etcd, 2 x page
    ({"resourceVersion": "123", "limit": "500", "labelSelector": "app=x"}, 5500),  # etcd: all + page
    ({"resourceVersionMatch": "Exact", "resourceVersion": "123", "limit": "500"}, 1000),
    ({"resourceVersionMatch": "NotOlderThan", "resourceVersion": "123", "limit": "500"}, 5000),
    ({"limit": "500", "continue": "token"}, 1000),
    ({"limit": "500"}, 5000),  # a consistent first page: from the cache, which counts all
    ({"fieldSelector": "metadata.name=web"}, 1),
    ({"watch": "1"}, 5000),  # from "now": the whole state replayed
    ({"watch": "1", "resourceVersion": "0"}, 5000),
    ({"watch": "1", "resourceVersion": "123"}, 0),  # resuming: no initial list
    ({"watch": "1", "resourceVersion": "123", "sendInitialEvents": "true",
      "resourceVersionMatch": "NotOlderThan"}, 5000),
    ({"watch": "1", "sendInitialEvents": "false", "resourceVersion": "123"}, 0),
]


@pytest.mark.parametrize(("query", "expected"), ESTIMATES)
def test_objects_are_counted_as_the_apf_list_work_estimator_counts_them(
        query: dict[str, str], expected: int) -> None:
    """Each row: the objects APF's count-based estimator attributes to the request."""
    assert objects(classify("GET", PODS, query), 5000) == expected


def test_a_page_larger_than_the_collection_counts_the_collection() -> None:
    """etcd reads 2 x min(limit, stored); the cache reads what is stored."""
    assert objects(classify("GET", PODS, {"limit": "500", "continue": "t"}), 300) == 600
    assert objects(classify("GET", PODS, {"limit": "500"}), 300) == 300


@pytest.mark.parametrize(("query", "observed", "cost"), [
    ({"limit": "1", "resourceVersion": "0"}, 5000, 10.0),  # was 1 + 1/100: the limit dodged the price
    ({"labelSelector": "app=x"}, 5000, 10.0),
    ({"watch": "1", "resourceVersion": "9", "sendInitialEvents": "true",
      "resourceVersionMatch": "NotOlderThan"}, 300, 4.0),
    ({"watch": "1", "resourceVersion": "9"}, 300, 1.0),
    ({}, None, 10.0),  # never measured: the rule's conservative `unmeasured`
    ({}, 0, 1.0),
    ({"fieldSelector": "metadata.name=x"}, None, 1.0),
])
def test_tokens_follow_the_counted_objects(query: dict[str, str], observed: int | None, cost: float) -> None:
    """cost = min(max, base + objects / perObjects), with `unmeasured` objects for an unknown count."""
    assert request_cost(classify("GET", PODS, query), ListCost(), observed) == cost


def test_an_unmeasured_estimate_is_the_rules_to_choose() -> None:
    """`unmeasured: 200` prices a LIST of an unknown resource at 1 + 200/100."""
    assert request_cost(classify("GET", PODS, {}), ListCost(unmeasured=200), None) == 3.0


def test_a_namespace_never_measured_is_priced_by_the_cluster_wide_count() -> None:
    """The count of every pod bounds the pods of one namespace."""
    counts = ObjectCounts()
    counts.observe("dev", "", "pods", "", 4000)
    assert counts.get("dev", classify("GET", PODS, {})) == 4000
    counts.observe("dev", "", "pods", "a", 12)
    assert counts.get("dev", classify("GET", PODS, {})) == 12


def test_one_odd_answer_cannot_make_a_large_collection_look_empty() -> None:
    """Counts rise at once and fall by at most half per observation."""
    counts = ObjectCounts()
    info = classify("GET", PODS, {})
    for seen, kept in [(5000, 5000), (0, 2500), (0, 1250), (6000, 6000)]:
        counts.observe("dev", "", "pods", "a", seen)
        assert counts.get("dev", info) == kept


@pytest.mark.parametrize(("method", "query", "learns"), [
    ("GET", {}, True),
    ("GET", {"resourceVersion": "0", "limit": "500"}, True),
    ("GET", {"resourceVersionMatch": "NotOlderThan", "resourceVersion": "5"}, True),
    ("HEAD", {}, False),  # no body: it once recorded 0 objects for everyone's LISTs
    ("GET", {"labelSelector": "app=x"}, False),
    ("GET", {"fieldSelector": "status.phase=Running"}, False),
    ("GET", {"continue": "t", "limit": "5"}, False),
    ("GET", {"resourceVersion": "17", "limit": "5"}, False),  # an old snapshot
    ("GET", {"resourceVersionMatch": "Exact", "resourceVersion": "17"}, False),
    ("GET", {"fieldSelector": "metadata.name=x"}, False),
])
def test_counts_are_learnt_only_from_answers_no_caller_can_bend(
        method: str, query: dict[str, str], learns: bool) -> None:
    """GETs of the whole current collection teach; HEAD, selectors, pages and snapshots do not."""
    assert learnable(method, classify(method, PODS, query)) is learns


@pytest.mark.parametrize(("content_type", "encoding"), [
    ("application/json", "json"),
    ("application/json;as=Table;v=v1;g=meta.k8s.io", "json"),
    ("application/vnd.kubernetes.protobuf", "protobuf"),
    ("Application/Vnd.Kubernetes.Protobuf; charset=binary", "protobuf"),
    ("application/vnd.kubernetes.protobuf;stream=watch", "protobuf"),
    ("application/yaml", None),
    ("text/plain", None),
])
def test_json_and_protobuf_answers_are_counted(content_type: str, encoding: str | None) -> None:
    """guard learns from both encodings client-go uses, and from nothing else."""
    assert encoding_of(content_type) == encoding


@pytest.mark.parametrize(("body", "shape"), [
    (proto_list([]), ListShape(0)),
    (proto_list([pod(f"p{i}") for i in range(3)]), ListShape(3)),
    (proto_list([pod(f"p{i}", 300) for i in range(1000)]), ListShape(1000)),
    (proto_list([pod("a"), pod("b")], remaining=98, cont="next"), ListShape(2, 98, True)),
    (proto_list([pod("a")], cont="next"), ListShape(1, None, True)),
    (proto_list([pod("a")], kind="PartialObjectMetadataList"), ListShape(1)),
])
def test_protobuf_list_items_are_counted_without_decoding_them(body: bytes, shape: ListShape) -> None:
    """Items are the List's field 2; ListMeta's continue (3) and remainingItemCount (4) are read."""
    assert list_shape(body) == shape


@pytest.mark.parametrize("body", [
    b"",
    b"{\"kind\":\"PodList\"}",
    proto_list([pod("a")], kind="Pod"),  # not a List
    proto_list([pod("a")], kind="Status"),
    proto_list([pod("a")], encoding="gzip"),  # raw is not a plain message
    proto_list([pod("a"), pod("b")])[:-9],  # truncated
    b"k8s\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    b"k8s\x00" + field(2, b"\x0f\x01"),  # an unknown wire type
])
def test_malformed_or_foreign_protobuf_is_not_counted(body: bytes) -> None:
    """Anything but a well-formed protobuf List yields None, never an exception."""
    assert list_shape(body) is None


def test_a_protobuf_list_read_whole_is_learnt_like_a_json_one() -> None:
    """The sizer counts a protobuf body exactly and learns its average object size per encoding."""
    sizer = ListSizer()
    info = classify("GET", PODS, {})
    body = proto_list([pod(f"p{i}", 200) for i in range(40)])
    assert sizer.whole("dev", info, body, encoding="protobuf") == 40
    assert sizer.streamed("dev", info, len(body) * 10, encoding="protobuf") == 400
    assert sizer.streamed("dev", info, len(body) * 10, encoding="json") is None
    json_body = json.dumps({"kind": "PodList", "metadata": {"resourceVersion": "1"},
                            "items": [{"metadata": {"resourceVersion": "1"}}]}).encode()
    assert sizer.whole("dev", info, json_body, encoding="json") == 1


def test_a_single_object_teaches_the_size_a_streamed_list_is_estimated_by() -> None:
    """A GET of one 2 KB pod lets a 2 MB streamed LIST of pods be estimated at 1,000 objects; a
    size learnt from LISTs is not replaced by one object's."""
    sizer = ListSizer()
    info = classify("GET", PODS, {})
    sizer.one_object("dev", classify("GET", PODS + "/web", {}), b"x" * 2000)
    assert sizer.streamed("dev", info, 2_000_000) == 1000
    sizer.one_object("dev", classify("GET", PODS + "/big", {}), b"x" * 20_000)
    assert sizer.streamed("dev", info, 2_000_000) == 1000
