"""The request path's cheap encodings: the access-log line built without the generic JSON encoder,
and the raw answer head written straight to the client transport."""

from __future__ import annotations

import json

import pytest

from guard.kube.identity import Identity
from guard.kube.requestinfo import classify
from guard.telemetry.accesslog import AccessRecord, encode, line


@pytest.mark.parametrize("record", [
    AccessRecord(identity=None, info=None, method="GET", status=500, bytes=0, latency=0.0, cluster="dev",
                 remote=""),
    AccessRecord(identity=Identity('ä"lice\n', ("g1", "sys:\\x")),
                 info=classify("GET", "/api/v1/namespaces/ns/pods/p\u00e9", {}), method="GET", status=200,
                 bytes=12, latency=0.0001234567, cluster="c", remote="127.0.0.1", decision="admitted",
                 tenant="t", rule="r"),
    AccessRecord(identity=Identity("bob"), info=classify("GET", "/version", {}), method="GET", status=429,
                 bytes=3, latency=1.5, cluster="c", remote="::1", decision="rejected", tenant="t", rule="r",
                 retry_after=7),
])
def test_the_fast_access_line_is_exactly_the_json_of_the_record(record: AccessRecord) -> None:
    """encode() writes what json.dumps(line()) writes, escapes included, without building the dict."""
    assert encode(record) == json.dumps(line(record), separators=(",", ":"))
