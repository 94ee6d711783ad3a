"""What the request path spends per request, counted rather than timed (issue 16): calls that cost a
system call, and objects built per request. Each test counts over many requests through real
sockets, so a cost that comes back per request fails it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys

import pytest
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy

from guard.admission.config import AdmissionSettings
from guard.admission.decision import Ticket, Verdict
from guard.admission.rules import compile_policies
from guard.admission.store import Take
from guard.http import headers
from guard.http import pool as pool_module
from guard.http.pool import Pool
from guard.identity.authn import Credentials
from guard.kube.identity import Identity
from guard.kube.requestinfo import classify
from guard.process import collector
from guard.proxy.pipeline import _Record
from guard.telemetry import accesslog
from guard.telemetry.accesslog import AccessRecord

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class _Static(asyncio.Protocol):
    """An upstream answering every request head with one small answer, keep-alive."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for _ in range(data.count(b"\r\n\r\n")):
            self.transport.write(ANSWER)  # type: ignore[attr-defined]


async def test_the_pool_looks_its_event_loop_up_once_not_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Python 3.11 `asyncio.get_running_loop()` makes a getpid() system call; the pool took it
    twice per request (acquire, give back). It now keeps the loop it first ran on."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Static, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    calls = 0
    real = asyncio.get_running_loop

    def counting() -> asyncio.AbstractEventLoop:
        nonlocal calls
        calls += 1
        return real()

    monkeypatch.setattr(pool_module.asyncio, "get_running_loop", counting)
    pool = Pool("127.0.0.1", port, ssl_context=None, connect_timeout=5)
    try:
        for _ in range(50):
            answer = await pool.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None, read_timeout=5)
            assert await answer.read() == b"{}"
            answer.release()
    finally:
        monkeypatch.undo()
        pool.close()
        server.close()
    assert pool.opened == 1  # one keep-alive connection served them all
    assert calls <= 1


def test_credentials_never_show_the_token_or_certificate() -> None:
    """Credentials became a NamedTuple (built once per request); its repr and str still hide the
    token and the certificate, as the frozen dataclass's `repr=False` fields did."""
    creds = Credentials(bearer_token="s3cr3t-token", peer_certificate_der=b"DER-BYTES",
                        remote_addr="10.0.0.1")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "s3cr3t" not in text and "DER-BYTES" not in text
        assert "10.0.0.1" in text


def test_per_request_values_are_tuples_or_slotted_not_dataclasses() -> None:
    """The values built once per request are immutable NamedTuples (Credentials, Verdict, Ticket, the
    bucket's Take, the rule Match) or a slotted class (the pipeline's record): no per-instance dict,
    no frozen dataclass __setattr__."""
    verdict = Verdict("admitted", "t", "r", 0, "", (("X", "y"),))
    ticket = Ticket(verdict)
    take = Take(True, 1.0, 0.0, 0.5)
    policies, _ = compile_policies([], AdmissionSettings())
    match = policies.match(Identity("alice"), classify("GET", "/api/v1/pods", {}), "c")
    for value in (Credentials(None, None), verdict, ticket, take, match, _Record(0.0)):
        assert not hasattr(value, "__dict__")
        assert not dataclasses.is_dataclass(value)
    assert verdict.admitted and not Verdict("rejected").admitted
    assert match.tenant == "_catch-all" and not match.exempt and take.allowed
    assert ticket.release() is None  # the default release does nothing
    with pytest.raises(AttributeError):
        verdict.outcome = "rejected"  # type: ignore[misc]


def test_a_serving_process_freezes_what_start_built_and_collects_the_young_less_often() -> None:
    """collector.settle(): everything alive at start leaves the collector's walks (frozen), young
    collections wait for YOUNG allocations instead of 700; thaw() gives the frozen back (a reload)."""
    script = (
        "import gc; from guard.process import collector\n"
        "assert gc.get_freeze_count() == 0 and gc.get_threshold()[0] == 700\n"
        "collector.settle()\n"
        "print(gc.get_freeze_count(), gc.get_threshold()[0])\n"
        "collector.thaw()\n"
        "print(gc.get_freeze_count())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    settled, thawed = done.stdout.splitlines()
    frozen, young = map(int, settled.split())
    assert frozen > 1000 and young == collector.YOUNG
    assert int(thawed) == 0


class _Split(asyncio.Protocol):
    """An upstream that sends the head and half the body at once and the rest a moment later."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}")  # type: ignore[attr-defined]
        asyncio.get_running_loop().call_later(0.05, transport.write, b"[]")  # type: ignore[attr-defined]


async def test_a_small_answer_already_whole_is_read_without_the_stream_readers_coroutines(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A small answer whose body came with its head is taken at once (`read_nowait`); one whose body
    is still arriving is awaited as before, and both read whole."""
    loop = asyncio.get_running_loop()
    awaited = 0
    real = StreamReader.read

    async def counting(self: StreamReader, n: int = -1) -> bytes:
        nonlocal awaited
        awaited += 1
        return await real(self, n)

    monkeypatch.setattr(StreamReader, "read", counting)
    for protocol, body, reads in ((_Static, b"{}", 0), (_Split, b"{}[]", 1)):
        server = await loop.create_server(protocol, "127.0.0.1", 0)
        pool = Pool("127.0.0.1", server.sockets[0].getsockname()[1], ssl_context=None, connect_timeout=5)
        awaited = 0
        try:
            for _ in range(5):
                answer = await pool.request("GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None, read_timeout=5)
                assert await answer.read() == body
                answer.release()
        finally:
            pool.close()
            server.close()
        assert awaited == 5 * reads


def test_connection_tokens_are_parsed_once_per_distinct_value_and_the_memory_is_bounded() -> None:
    inbound = CIMultiDictProxy(CIMultiDict([("Connection", "keep-alive, X-Drop"), ("X-Drop", "1")]))
    assert headers.connection_tokens(inbound) == frozenset({"keep-alive", "x-drop"})
    assert headers.connection_tokens(inbound) is headers.connection_tokens(inbound)  # remembered
    protected = CIMultiDictProxy(CIMultiDict([("Connection", "Authorization, impersonate-user, close")]))
    assert headers.connection_tokens(protected) == frozenset({"close"})
    for i in range(1000):  # a client sending a new value each time cannot grow it without bound
        headers.connection_tokens(CIMultiDictProxy(CIMultiDict([("Connection", f"x-{i}")])))
    assert len(headers._tokens_seen) <= headers._TOKENS_KEPT


def test_an_access_line_quotes_only_what_changes_once_its_caller_and_request_were_seen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's and the request's fields are encoded once per (Identity, RequestInfo, method)
    objects; a later line quotes only cluster, remote and the decision. A new Identity object that
    happens to get a freed one's id never gets that one's text."""
    who, info = Identity("alice", ("team-a", "system:authenticated")), classify(
        "GET", "/api/v1/namespaces/ns/pods/p", {})
    record = AccessRecord(identity=who, info=info, method="GET", status=200, bytes=2, latency=0.001,
                          cluster="c", remote="10.0.0.1", decision="admitted", tenant="t", rule="r")
    assert accesslog.encode(record) == json.dumps(accesslog.line(record), separators=(",", ":"))
    quoted = 0
    real = accesslog._quote

    def counting(text: str) -> str:
        nonlocal quoted
        quoted += 1
        return real(text)

    monkeypatch.setattr(accesslog, "_quote", counting)
    for status in (200, 404, 500):
        again = record._replace(status=status)
        assert accesslog.encode(again) == json.dumps(accesslog.line(again), separators=(",", ":"))
    assert quoted == 3 * 5  # cluster, remote, decision, tenant, rule (was 14 a line: user, method, path...
    for i in range(200):  # fresh Identity objects, freed at once: CPython reuses their ids
        other = record._replace(identity=Identity(f"user-{i}"))
        assert json.loads(accesslog.encode(other))["user"] == f"user-{i}"
