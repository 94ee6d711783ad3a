"""Counting a protobuf List's items as it streams by gives what counting the whole body gives,
however the body is cut into chunks; a malformed, truncated or encoded body gives nothing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.admission.protolist import list_shape
from guard.admission.protostream import StreamCounter
from tests.fuzzing import FUZZ
from tests.protobuf_lists import pod, proto_list

BODIES = {
    "empty": proto_list([]),
    "300 pods": proto_list([pod(f"p{i}", padding=200) for i in range(300)]),
    "a page": proto_list([pod("a"), pod("b")], remaining=40, cont="next"),
    "encoded": proto_list([pod("a")], encoding="gzip"),
    "not a list": proto_list([pod("a")], kind="Pod"),
}


def _streamed(body: bytes, cuts: list[int]) -> object:
    counter = StreamCounter()
    last = 0
    for cut in sorted({c % (len(body) + 1) for c in cuts}):
        counter.feed(body[last:cut])
        last = cut
    counter.feed(body[last:])
    return counter.shape()


@pytest.mark.parametrize("name", BODIES)
@pytest.mark.parametrize("size", [1, 3, 64, 65536])
def test_chunked_counts_equal_the_whole_body_count(name: str, size: int) -> None:
    body = BODIES[name]
    assert _streamed(body, list(range(size, len(body), size))) == list_shape(body)


@pytest.mark.fuzz
@FUZZ
@given(name=st.sampled_from(sorted(BODIES)), cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_any_chunking_counts_the_same(name: str, cuts: list[int]) -> None:
    body = BODIES[name]
    assert _streamed(body, cuts) == list_shape(body)


@pytest.mark.parametrize("body", [b"{\"items\": []}", b"k8s\x00\x0a", BODIES["300 pods"][:-700], b""])
def test_anything_but_a_whole_protobuf_list_has_no_shape(body: bytes) -> None:
    counter = StreamCounter()
    counter.feed(body)
    assert counter.shape() is None


def test_the_counter_keeps_no_item_bytes() -> None:
    counter = StreamCounter()
    counter.feed(BODIES["300 pods"])
    assert counter.shape() is not None and counter.shape().items == 300  # type: ignore[union-attr]
    assert sum(len(v) for v in counter._kept.values()) < 100
