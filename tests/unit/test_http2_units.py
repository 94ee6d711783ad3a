"""The HTTP/2 pieces that need no socket: guard's HTTP/1.1 answer heads as HTTP/2 header lists, a
stream's request head as the pipeline reads it, the flood budget, the settings keys and the access
log's protocol field."""

from __future__ import annotations

import json

import pytest

from guard import settings
from guard.http import answers
from guard.http.h2connection import Budget
from guard.http.h2stream import HTTP2, h2_headers, request_head
from guard.kube.errors import ConfigError, TooManyRequests
from guard.telemetry.accesslog import AccessRecord, encode, line


def test_a_status_answer_becomes_a_header_list_without_connection_specific_fields() -> None:
    """A 429 Status closing an HTTP/1.1 connection: on a stream the status is a pseudo-header, the
    names are lower case, `Connection: close` is gone, the body follows unchanged."""
    data = answers.status(TooManyRequests("slow down", retry_after=3), close=True)
    headers, body = h2_headers(data)
    assert headers[0] == (b":status", b"429")
    names = [name for name, _ in headers]
    assert b"connection" not in names and all(name == name.lower() for name in names)
    assert (b"retry-after", b"3") in headers and (b"content-type", b"application/json") in headers
    assert json.loads(body)["reason"] == "TooManyRequests"


def test_a_chunked_head_loses_transfer_encoding() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    headers, body = h2_headers(head)
    assert headers == [(b":status", b"200"), (b"content-type", b"application/json")] and body == b""


def test_a_stream_head_reads_like_an_http11_request() -> None:
    """Pseudo-headers become method and target, `:authority` becomes Host (routing by host reads
    it), the query is kept encoded, and the version says HTTP/2."""
    head = request_head([(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"guard:7443"),
                         (b":path", b"/api/v1/pods?labelSelector=a%3Db&watch=1"),
                         (b"authorization", b"Bearer t"), (b"accept", b"application/json")])
    target = "/api/v1/pods?labelSelector=a%3Db&watch=1"
    assert (head.method, head.path, head.version) == ("GET", target, HTTP2)
    assert head.headers["Host"] == "guard:7443" and head.headers["Authorization"] == "Bearer t"
    assert head.url.path == "/api/v1/pods" and head.url.query["labelSelector"] == "a=b"


def test_the_budget_allows_its_burst_then_refuses_and_refills_with_time() -> None:
    budget = Budget(rate=10, burst=20, now=0.0)
    assert all(budget.spend(0.0) for _ in range(20))
    assert not budget.spend(0.0)
    assert budget.spend(2.0)  # two seconds drained twenty
    steady = Budget(rate=10, burst=20, now=0.0)
    assert all(steady.spend(i / 10) for i in range(1000))  # at the rate, never refused


def test_http2_settings_are_read_and_checked_with_their_field() -> None:
    raw = {"listen": "127.0.0.1:1", "clusters": [{"name": "dev", "server": "http://a:1", "token": "t"}],
           "limits": {"http2MaxStreams": 250, "http2MaxHeaderListBytes": 65536,
                      "http2MaxResetsPerSecond": 20}}
    limits = settings.parse(raw, "g.yaml").limits
    assert (limits.http2_max_streams, limits.http2_max_header_list_bytes,
            limits.http2_max_resets_per_second) == (250, 65536, 20)
    assert settings.parse({**raw, "limits": {}}, "g.yaml").limits.http2_max_streams == 100
    assert settings.parse({**raw, "limits": {"http2GoawayChance": 0.001}},
                          "g.yaml").limits.http2_goaway_chance == 0.001
    raw["limits"] = {"http2MaxStreams": -1, "http2MaxResetsPerSecond": 0, "http2GoawayChance": 0.5}
    with pytest.raises(ConfigError) as caught:
        settings.parse(raw, "g.yaml")
    assert any("limits.http2MaxStreams" in p for p in caught.value.problems)
    assert any("limits.http2MaxResetsPerSecond" in p for p in caught.value.problems)
    assert any("limits.http2GoawayChance" in p and "0.02" in p for p in caught.value.problems)


@pytest.mark.parametrize("protocol", ["HTTP/2", "HTTP/1.1", ""])
def test_the_access_log_says_the_protocol_when_known(protocol: str) -> None:
    record = AccessRecord(identity=None, info=None, method="GET", status=200, bytes=0, latency=0.001,
                          cluster="dev", remote="127.0.0.1", protocol=protocol)
    assert json.loads(encode(record)) == line(record)
    assert json.loads(encode(record)).get("protocol") == (protocol or None)


def test_h2load_log_gives_rate_percentiles_and_failures() -> None:
    """bench.h2 reads h2load's per-request log (start µs, status, duration µs): 100 requests over
    one second, one of them a 503."""
    from bench.h2 import parse_h2load

    lines = [f"{1_000_000 + i * 10_000}\t{503 if i == 7 else 200}\t{1000 + i * 10}" for i in range(100)]
    figure = parse_h2load("\n".join(lines) + "\n", 1.0)
    assert figure.requests == 100 and figure.non2xx == 1
    assert 99 < figure.rps < 101
    assert figure.p50_ms == pytest.approx(1.495) and figure.p99_ms == pytest.approx(1.99)
