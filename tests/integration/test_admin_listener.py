"""The admin listener bound to every interface, as the manifests bind it: Prometheus and the kubelet
reach /metrics, /healthz and /readyz from another address; the debug pages answer only loopback
clients unless `admin.debug: open` says otherwise."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.proxy_fakes import GUARD_TOKEN, FakeApiServer, start_guard

PAGES = ("/metrics", "/healthz", "/readyz", "/debug/guard/config", "/debug/guard/buckets",
         "/debug/guard/policies", "/debug/guard/nope")


def _outward_address() -> str | None:
    """An address of this machine that is not loopback (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer()
    await fake.start()
    yield fake
    await fake.stop()


async def _statuses(base: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as session:
        answers = {}
        for page in PAGES:
            async with session.get(base + page) as answer:
                await answer.read()
                answers[page] = answer.status
        return answers


@pytest.mark.parametrize(("debug", "from_outside"), [
    ("", [200, 200, 200, 403, 403, 403, 403]),
    ("debug: loopback", [200, 200, 200, 403, 403, 403, 403]),
    ("debug: open", [200, 200, 200, 200, 200, 200, 404]),
    ("debug: off", [200, 200, 200, 404, 404, 404, 404]),
])
async def test_debug_pages_answer_loopback_clients_unless_opened(
        tmp_path: Path, api: FakeApiServer, debug: str, from_outside: list[int]) -> None:
    """From another address: the probes and /metrics answer, the debug pages by `admin.debug`;
    from loopback every page answers (unless debug is off)."""
    outward = _outward_address()
    if outward is None:
        pytest.skip("this machine has no address besides loopback")
    config = tmp_path / "guard.yaml"
    config.write_text(f"listen: 127.0.0.1:0\nadmin: {{address: '0.0.0.0:0', {debug}}}\n"
                      f"clusters:\n  - name: dev\n    server: {api.url}\n    token: {GUARD_TOKEN}\n"
                      "accessLog: {enabled: false}\n")
    guard = await start_guard(config)
    port = guard.admin.rsplit(":", 1)[1]
    try:
        outside = await _statuses(f"http://{outward}:{port}")
        inside = await _statuses(f"http://127.0.0.1:{port}")
    finally:
        await guard.server.stop()
    assert list(outside.values()) == from_outside
    off = debug == "debug: off"
    assert list(inside.values()) == [200, 200, 200, *([404] * 4 if off else [200, 200, 200, 404])]
