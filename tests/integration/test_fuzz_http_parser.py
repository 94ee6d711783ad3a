"""Property-based fuzzing of guard's HTTP/1.1 request path: generated request streams, valid and
hostile (Content-Length and Transfer-Encoding together or twice, chunk extensions and bad chunk
sizes, obs-fold, bare LF, NUL and other control bytes, oversized headers, pipelining), sent to a
real guard listener in front of an api-server stand-in that parses what reaches it with h11, an
HTTP/1.1 implementation independent of guard's llhttp.

Invariants, for every stream: guard never answers 5xx nor shows a traceback; every request that
reaches the upstream is well-formed (h11 reads it, one request per request guard accepted), is one
the client sent (never a request smuggled inside another), in order, and none follows a request
guard refused as unparseable; every 200 the client gets is the upstream's answer to the request in
that position, with its method and, where the framing is unambiguous, its body byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h11
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from guard.http import server as http_server
from tests.fuzzing import FUZZ, LoopThread
from tests.proxy_fakes import RunningGuard, start_guard

pytestmark = pytest.mark.fuzz
SENTINEL = "/api/v1/namespaces/n/configmaps/sentinel"
REVIEWS = ("/apis/authentication.k8s.io/", "/apis/authorization.k8s.io/")


@dataclass
class Seen:
    method: str
    target: str
    body: bytes


@dataclass
class Upstream:
    """What reached the api-server stand-in."""

    requests: list[Seen] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    """Bytes h11 refused while a request was starting or before its body began: a bad request."""
    aborted: int = 0
    """Requests whose connection closed before their body ended (guard gave up on the client's)."""

    def clear(self) -> None:
        self.requests.clear()
        self.malformed.clear()
        self.aborted = 0


class Recorder(asyncio.Protocol):
    """One upstream connection, parsed by h11; every whole request is answered 200 with its target."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        self.current: Seen | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._events()

    def eof_received(self) -> bool:
        self.h11.receive_data(b"")
        self._events()
        return False

    def _events(self) -> None:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                if self.current is not None and "complete message body" in str(e):
                    self.upstream.aborted += 1
                else:
                    self.upstream.malformed.append(str(e))
                self.transport.close()
                return
            if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                return
            if isinstance(event, h11.Request):
                self.current = Seen(event.method.decode(), event.target.decode("latin-1"), b"")
            elif isinstance(event, h11.Data) and self.current is not None:
                self.current.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage) and self.current is not None:
                self._answer(self.current)

    def _answer(self, seen: Seen) -> None:
        if not seen.target.startswith(REVIEWS):  # guard's own TokenReviews and SubjectAccessReviews
            self.upstream.requests.append(seen)
        self.current = None
        body = json.dumps({"target": seen.target}).encode()
        self.transport.write(self.h11.send(h11.Response(status_code=200, headers=[
            ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])) or b"")
        if seen.method != "HEAD":
            self.transport.write(self.h11.send(h11.Data(data=body)) or b"")
        self.transport.write(self.h11.send(h11.EndOfMessage()) or b"")
        self.h11.start_next_cycle()


@dataclass
class Bed:
    loop: LoopThread
    guard: RunningGuard
    upstream: Upstream
    address: tuple[str, int]


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    """guard (anonymous callers, no policies) in front of the recorder, on a loop thread; its sweep
    runs every 50 ms so that a body that never comes costs an example 200 ms, not a minute."""
    directory = tmp_path_factory.mktemp("fuzz-http")
    loop, upstream = LoopThread(), Upstream()
    sweep = http_server.SWEEP_EVERY
    http_server.SWEEP_EVERY = 0.05

    async def start() -> tuple[RunningGuard, asyncio.Server]:
        listener = await asyncio.get_running_loop().create_server(lambda: Recorder(upstream), "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        config = directory / "guard.yaml"
        config.write_text(
            f"listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nclusters:\n  - name: dev\n"
            f"    server: http://127.0.0.1:{port}\n    token: guard-token\nidentity: {{anonymous: true}}\n"
            "limits: {maxBodyBytes: 262144, bodyTimeout: 200ms, requestTimeout: 5s}\n"
            "accessLog: {enabled: false}\n")
        return await start_guard(config), listener

    guard, listener = loop.run(start())
    host, port = guard.url.removeprefix("http://").rsplit(":", 1)
    try:
        yield Bed(loop, guard, upstream, (host, int(port)))
    finally:
        async def stop() -> None:
            await guard.server.stop()
            listener.close()  # on the loop's own thread: asyncio's servers are not thread-safe

        loop.run(stop())
        loop.close()
        http_server.SWEEP_EVERY = sweep


# -- what the client sends

@dataclass(frozen=True)
class Sent:
    method: str
    target: str
    wire: bytes
    body: bytes | None
    """The body as its framing says, when the framing is unambiguous; None when it is hostile."""


TOKENS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
ODD_METHODS = st.sampled_from(["get", "G ET", "GET\x00", "PO\rST", "", "X" * 300, "GET\t", "M-SEARCH"])
TAILS = st.sampled_from(["", "", "?watch=false", "?limit=5&continue=abc", "?labelSelector=a%3Db"])
ODD_TAILS = st.sampled_from(["?a=%00&b=%0d%0a", "?x= y", "\x00", "\r", "#frag", "/../../etc", "\xff\xfe",
                             "?" + "q" * 20000, " HTTP/1.0", "\t", "?\x7f"])
NAMES = st.sampled_from(["Accept", "Content-Type", "User-Agent", "X-Request-Id", "Impersonate-User",
                         "X-Remote-User", "Connection", "Keep-Alive", "Expect", "Cookie", "Host", "Upgrade"])
ODD_NAMES = st.sampled_from(["X A", "X:A", "", "X\x00A", "X\rA", " Accept", "Accept ", "\xe9t\xe9", "X\x7f"])
VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40)
ODD_VALUES = st.sampled_from(["a\r\n b", "a\r\n\tb", "a\x00b", "a\nb", "a\rb", "\x7f", "\x01", "x" * 20000,
                              "\xff\xfe", "keep-alive, Content-Length", "100-continue",
                              "Upgrade, Impersonate-User"])
FLAWS = st.sampled_from(["none"] * 12 + ["method", "target", "name", "value", "eol", "framing", "framing"])
FRAMINGS = st.sampled_from(["none", "length", "chunked"])
ODD_FRAMINGS = st.sampled_from(["chunk-extension", "trailer", "length+chunked", "two-lengths", "short-length",
                                "long-length", "bad-chunk-size", "te-list", "te-other", "te-obfuscated",
                                "huge-length", "signed-length"])


@st.composite
def requests(draw: st.DrawFn, index: int) -> Sent:
    """A request with at most one flaw: in its method, target, a header's name or value, its line
    ends or its framing."""
    flaw = draw(FLAWS)
    method = draw(ODD_METHODS if flaw == "method" else TOKENS)
    target = f"/api/v1/namespaces/n/configmaps/c{index}" + draw(ODD_TAILS if flaw == "target" else TAILS)
    eol = "\n" if flaw == "eol" else "\r\n"
    headers = draw(st.lists(st.tuples(NAMES, VALUES), max_size=4))
    if flaw in ("name", "value"):
        odd = (draw(ODD_NAMES), "v") if flaw == "name" else (draw(NAMES), draw(ODD_VALUES))
        headers.insert(draw(st.integers(0, len(headers))), odd)
    content = draw(st.binary(max_size=200))
    framing, body = _framing(draw(ODD_FRAMINGS if flaw == "framing" else FRAMINGS), content, eol)
    lines = [f"{method} {target} HTTP/1.1", "Host: guard",
             *[f"{name}: {value}" for name, value in headers if (name.lower(), value.lower()) not in (
                 ("connection", "close"), ("upgrade", value.lower()))], *framing]
    wire = (eol.join(lines) + eol + eol).encode("latin-1", "replace") + body[0]
    return Sent(method, target, wire, body[1] if method != "HEAD" else None)


def _framing(kind: str, content: bytes, eol: str) -> tuple[list[str], tuple[bytes, bytes | None]]:
    """Framing header lines and (the bytes after the head, the body they frame when unambiguous)."""
    crlf = eol.encode()
    chunked = (b"%x" % len(content) + crlf + content + crlf if content else b"") + b"0" + crlf + crlf
    n = len(content)
    table: dict[str, tuple[list[str], bytes, bytes | None]] = {
        "none": ([], b"", b""),
        "length": ([f"Content-Length: {n}"], content, content),
        "chunked": (["Transfer-Encoding: chunked"], chunked, content),
        "chunk-extension": (["Transfer-Encoding: chunked"],
                            chunked.replace(crlf, b';ext="v"' + crlf, 1) if content else chunked, content),
        "trailer": (["Transfer-Encoding: chunked"], chunked[: -len(crlf)] + b"X-T: 1" + crlf + crlf, content),
        "length+chunked": ([f"Content-Length: {n}", "Transfer-Encoding: chunked"], chunked, None),
        "two-lengths": ([f"Content-Length: {n}", f"Content-Length: {n + 1}"], content, None),
        "short-length": ([f"Content-Length: {max(0, n - 1)}"], content, None),
        "long-length": ([f"Content-Length: {n + 5}"], content, None),
        "bad-chunk-size": (["Transfer-Encoding: chunked"], b"zz" + crlf + chunked.partition(crlf)[2], None),
        "te-list": (["Transfer-Encoding: gzip, chunked"], chunked, None),
        "te-other": (["Transfer-Encoding: identity"], content, None),
        "te-obfuscated": (["Transfer-Encoding : chunked"], chunked, None),
        "huge-length": (["Content-Length: 99999999999999999999"], content, None),
        "signed-length": ([f"Content-Length: +{n}"], content, None),
    }
    lines, after, body = table[kind]
    return lines, (after, body)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Sent], bool]:
    """Requests to pipeline on one connection, and whether each leaves in a write of its own (so
    guard may be serving one when a flawed one arrives) or all in one."""
    count = draw(st.integers(min_value=1, max_value=4))
    return [draw(requests(i)) for i in range(count)], draw(st.booleans())


# -- what the client gets

@dataclass
class Answer:
    status: int
    body: bytes


def _answers(data: bytes, methods: list[str]) -> tuple[list[Answer], bytes]:
    """The final answers in `data` (1xx skipped) and what is left unparsed. `methods[i]` says
    whether answer i was to a HEAD."""
    answers: list[Answer] = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in
                  (line.partition(b":") for line in head.split(b"\r\n")[1:])}
        if status < 200:
            data = rest
            continue
        length = int(fields.get(b"content-length", b"0"))
        head_request = len(answers) < len(methods) and methods[len(answers)] == "HEAD"
        if head_request and not rest.startswith(b"{"):  # a refused, unparsed HEAD still gets a body
            length = 0
        if b"chunked" in fields.get(b"transfer-encoding", b""):
            raise AssertionError("guard chunked a small answer")
        if len(rest) < length:
            break
        answers.append(Answer(status, rest[:length]))
        data = rest[length:]
    return answers, data


def _exchange(address: tuple[str, int], wires: list[bytes], methods: list[str],
              paced: bool) -> tuple[list[Answer], bytes, bool]:
    """Send `wires` on one connection (one write each when `paced`, else all at once); read until
    the sentinel's answer or the end. Returns the answers, every byte received, and whether guard
    closed the connection."""
    received = b""
    with socket.create_connection(address, timeout=10) as sock:
        for wire in wires if paced else [b"".join(wires)]:
            try:
                sock.sendall(wire)
            except OSError:
                break  # guard closed on a flawed request: what it answered is still to be read
            if paced:
                time.sleep(0.005)
        closed = False
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                closed = True
                break
            except TimeoutError as e:
                raise AssertionError(f"guard neither answered nor closed; got {received[:300]!r}") from e
            if not chunk:
                closed = True
                break
            received += chunk
            answers, _ = _answers(received, methods)
            if answers and SENTINEL.encode() in answers[-1].body:
                break
    return _answers(received, methods)[0], received, closed


@FUZZ
@given(stream=streams())
def test_guard_forwards_exactly_the_requests_it_accepted_well_formed(
        bed: Bed, stream: tuple[list[Sent], bool]) -> None:
    sentinel = Sent("GET", SENTINEL, f"GET {SENTINEL} HTTP/1.1\r\nHost: guard\r\n\r\n".encode(), b"")
    sent = [*stream[0], sentinel]
    bed.upstream.clear()
    answers, received, closed = _exchange(bed.address, [s.wire for s in sent], [s.method for s in sent],
                                          stream[1])
    seen = _settled(bed)
    event(f"answers {sorted({a.status for a in answers})}{', closed' if closed else ''}")

    assert b"Traceback" not in received and b"HTTP/1.1 5" not in received, received[:500]
    assert bed.upstream.malformed == [], bed.upstream.malformed
    assert len(answers) <= len(sent)
    # The upstream saw a subsequence of what was sent, in order, nothing invented or split.
    position = _positions([s.target for s in sent], [r.target for r in seen])
    # A request guard refused as unparseable (then closed) ends what may reach the upstream.
    if closed and answers and answers[-1].status in (400, 431):
        assert all(i < len(answers) - 1 for i in position), (answers[-1], position)
    # Every 200 is the upstream's answer to the request in that position, whole.
    for i, answer in enumerate(answers):
        if answer.status == 200:
            assert i in position, (i, answer)
            got = seen[position.index(i)]
            assert got.method == sent[i].method
            if sent[i].method != "HEAD":
                assert json.loads(answer.body)["target"] == sent[i].target
            if sent[i].body is not None:
                assert got.body == sent[i].body


def _settled(bed: Bed) -> list[Seen]:
    """The upstream's record once requests guard may still be forwarding have arrived."""
    async def pause() -> None:
        await asyncio.sleep(0.02)
    bed.loop.run(pause())
    return list(bed.upstream.requests)


def _positions(sent: list[str], seen: list[str]) -> list[int]:
    """For each target the upstream saw, in order, the index of the request it came from."""
    positions, start = [], 0
    for target in seen:
        assert target in sent[start:], f"the upstream saw {target!r}, which was not sent (after {start})"
        start = sent.index(target, start) + 1
        positions.append(start - 1)
    return positions


def test_the_recorder_refuses_what_is_not_http(tmp_path: Path) -> None:
    """The stand-in is strict: a header with a NUL or a bare CR is malformed to it, so the fuzzer
    above would see guard forward one."""
    upstream = Upstream()
    recorder = Recorder(upstream)

    class Sink:
        def write(self, data: bytes) -> None: ...
        def close(self) -> None: ...

    recorder.transport = Sink()  # type: ignore[assignment]
    recorder.data_received(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n")
    assert len(upstream.malformed) == 1 and upstream.requests == []
