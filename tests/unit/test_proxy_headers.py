"""Hop-by-hop handling and header hygiene of the forwarder, as tables."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from guard.http import answers, headers
from guard.http.headers import connection_tokens, forwardable


def inbound(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def request_headers(headers: CIMultiDictProxy[str], *, peer: str, keep_authorization: bool,
                    add: list[tuple[str, str]]) -> CIMultiDict[str]:
    """What the pipeline sends upstream: the forwardable inbound headers, then guard's own."""
    return CIMultiDict([*forwardable(headers, peer=peer, keep_authorization=keep_authorization), *add])


@pytest.mark.parametrize(("pairs", "gone", "kept"), [
    ([("Connection", "keep-alive, X-Foo"), ("X-Foo", "1"), ("Keep-Alive", "5"), ("Accept", "a")],
     ["Connection", "X-Foo", "Keep-Alive"], ["Accept"]),
    ([("Connection", "Authorization"), ("Authorization", "Bearer t")], ["Connection"], ["Authorization"]),
    ([("Impersonate-User", "root"), ("Impersonate-Extra-Scopes", "x"), ("X-Remote-User", "root")],
     ["Impersonate-User", "Impersonate-Extra-Scopes", "X-Remote-User"], []),
    ([("Transfer-Encoding", "chunked"), ("TE", "trailers"), ("Upgrade", "h2c"), ("Host", "guard")],
     ["Transfer-Encoding", "TE", "Upgrade", "Host"], []),
    ([("Proxy-Authorization", "Basic x"), ("Content-Type", "application/json")],
     ["Proxy-Authorization"], ["Content-Type"]),
])
def test_request_headers_drop_hop_by_hop_and_identity_headers(
        pairs: list[tuple[str, str]], gone: list[str], kept: list[str]) -> None:
    """End-to-end headers pass; hop-by-hop, Connection-named and identity-smuggling ones do not."""
    out = request_headers(inbound(*pairs), peer="10.0.0.1", keep_authorization=True, add=[])
    assert not [g for g in gone if g in out]
    assert all(k in out for k in kept)


def test_guards_own_headers_survive_a_connection_header_naming_them() -> None:
    """`Connection: Impersonate-User, Authorization` cannot strip what guard adds."""
    out = request_headers(inbound(("Connection", "Impersonate-User, Authorization"),
                                  ("Authorization", "Bearer caller")),
                          peer="10.0.0.1", keep_authorization=False,
                          add=[("Authorization", "Bearer guard"), ("Impersonate-User", "alice")])
    assert out.getall("Authorization") == ["Bearer guard"]
    assert out.getall("Impersonate-User") == ["alice"]


def test_x_forwarded_for_appends_the_peer() -> None:
    """An existing chain is kept and the connecting peer appended."""
    out = request_headers(inbound(("X-Forwarded-For", "1.2.3.4")), peer="10.0.0.1",
                          keep_authorization=True, add=[])
    assert out.getall("X-Forwarded-For") == ["1.2.3.4, 10.0.0.1"]


def test_response_headers_drop_hop_by_hop_and_add_the_verdicts() -> None:
    """Upstream framing headers go; the admission verdict's headers are added."""
    upstream = inbound(("Transfer-Encoding", "chunked"), ("Content-Type", "application/json"),
                       ("Connection", "X-Internal"), ("X-Internal", "1"))
    head = answers.head(200, "OK", upstream, [("RateLimit", '"r";r=1;t=1')],
                          drop=connection_tokens(upstream), length=None, chunked=True, close=False)
    names = [line.split(":")[0] for line in head.decode().split("\r\n")[1:] if line]
    assert names == ["Content-Type", "RateLimit", "Date", "Transfer-Encoding"]


def test_a_header_with_a_line_break_is_never_sent() -> None:
    """guard's own additions are the only headers that could carry one: the answer is refused."""
    with pytest.raises(headers.HeaderInjection):
        answers.whole(200, "OK", None, [("X-Tenant", "a\r\nSet-Cookie: x")], b"{}")
