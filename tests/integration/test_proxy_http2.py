"""HTTP/2 on guard's TLS listener (ALPN h2), with the simulator as the api-server: a raw h2 client
(tests/h2client.py) multiplexes requests and watches on one connection through the same pipeline as
HTTP/1.1 (identity, admission, forwarding), one stream that stops reading does not stall another,
a client reset frees the stream's upstream request, floods end the attacker's connection while a
well-behaved client keeps ≥ 99 % success, GOAWAY on SIGTERM, and HTTP/1.1 on the same port.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from h2.settings import SettingCodes
from hyperframe.frame import PriorityFrame

from tests.conftest import SimServer
from tests.h2client import Answer, Guard, H2Client, start_guard

PODS = "/api/v1/namespaces/team-a/pods"


@pytest.fixture
def guard(sim_server: Callable[..., SimServer], tmp_path: Path) -> Iterator[Guard]:
    g = start_guard(sim_server("--seed-objects", "2"), tmp_path)
    try:
        yield g
    finally:
        g.process.terminate()
        g.process.wait(timeout=20)


def test_requests_multiplex_on_one_connection_through_the_pipeline(guard: Guard) -> None:
    """ALPN picks h2; twenty GETs on one connection are answered; identity and admission ran (a bad
    token gets a Status 401, not a pass); the access log says HTTP/2."""
    client = guard.client()
    try:
        assert client.protocol == "h2"
        streams = [client.request("GET", f"{PODS}?limit={i + 1}", guard.token()) for i in range(20)]
        assert client.wait(lambda: all(client.answers[s].ended for s in streams))
        assert [client.answers[s].status for s in streams] == [200] * 20
        assert all(json.loads(client.answers[s].body)["kind"] == "PodList" for s in streams)
        denied = client.get(PODS, "not-a-token")
        assert denied.status == 401 and json.loads(denied.body)["kind"] == "Status"
        created = client.request("POST", PODS, guard.token(), body=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "h2-box"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}).encode())
        assert client.wait(lambda: client.answers[created].ended)
        assert client.answers[created].status == 201
    finally:
        client.close()
    lines = guard.wait_log(lambda line: str(line.get("path", "")).startswith(PODS), 21)
    assert len(lines) == 21 and {line["protocol"] for line in lines} == {"HTTP/2"}
    assert {line["user"] for line in lines if line["status"] == 200} == {"alice"}


def _pod(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def _added(body: bytearray, prefix: str) -> set[str]:
    """Names starting with `prefix` in the ADDED events of a watch's body so far (whole lines only)."""
    names = set()
    for line in bytes(body).split(b"\n")[:-1]:
        event = json.loads(line)
        name = event["object"]["metadata"]["name"]
        if event["type"] == "ADDED" and name.startswith(prefix):
            names.add(name)
    return names


def _long_running(guard: Guard) -> float:
    return guard.metrics().get('guard_requests_in_flight{cluster="sim",kind="long-running"}', -1)


def test_a_stream_that_stops_reading_stalls_no_other_and_a_reset_frees_its_watch(guard: Guard) -> None:
    """A hundred watches (the default stream limit guard announces) on one connection with 4 KiB
    stream windows: one never acknowledges what it gets, the others read. Forty pods later every
    reading watch has all forty ADDED events while the silent one holds no more than its window;
    resetting it ends its upstream watch (guard's long-running gauge falls by one) and the
    connection goes on serving."""
    client = guard.client(window=4096)
    try:
        assert client.wait(lambda: client.conn.remote_settings.max_concurrent_streams == 100)
        slow = client.request("GET", f"{PODS}?watch=1&resourceVersion=0", guard.token(), read=False)
        readers = [client.request("GET", f"{PODS}?watch=1&resourceVersion=0", guard.token())
                   for _ in range(99)]
        assert client.wait(lambda: all(client.answers[s].status == 200 for s in [slow, *readers]))
        assert client.wait(lambda: _long_running(guard) == 100)
        for i in range(40):
            status, _ = guard.sim.request("POST", PODS, body=_pod(f"late-{i}"))
            assert status == 201
        want = {f"late-{i}" for i in range(40)}
        assert client.wait(lambda: all(_added(client.answers[s].body, "late-") == want for s in readers))
        assert len(client.answers[slow].body) <= 4096
        assert len(_added(client.answers[slow].body, "late-")) < 40
        client.reset(slow)
        assert client.wait(lambda: _long_running(guard) == 99)
        assert client.get(f"{PODS}?limit=1", guard.token()).status == 200
    finally:
        client.close()


def _well_behaved(guard: Guard, requests: int, attack: Callable[[], None]) -> tuple[int, int]:
    """(successes, rounds of `attack`): `requests` GETs on their own h2 connection, one at a time,
    while `attack` runs round after round in a thread until they are done."""
    done = threading.Event()
    rounds = [0]

    def attacker() -> None:
        while not done.is_set():
            attack()
            rounds[0] += 1

    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    ok = 0
    client = guard.client()
    try:
        for i in range(requests):
            if client.closed:
                client = guard.client()
            if client.get(f"{PODS}?limit={i % 5 + 1}", guard.token(), timeout=10).status == 200:
                ok += 1
    finally:
        done.set()
        thread.join(timeout=30)
        client.close()
    return ok, rounds[0]


def _until_closed(client: H2Client) -> int | None:
    """Read until guard closes the connection; the GOAWAY code it sent (None: none)."""
    client.wait(lambda: client.closed, timeout=5)
    client.close()
    return client.goaway


def test_rapid_reset_flood_ends_the_attackers_connections_not_the_service(guard: Guard) -> None:
    """CVE-2023-44487: connection after connection opens and resets 1,000 streams in one write.
    Each is ended with GOAWAY ENHANCE_YOUR_CALM; a well-behaved client on its own connection gets
    at least 99 % of 200 requests answered, and guard's memory stays bounded."""
    codes: list[int | None] = []
    before = guard.rss_kib()

    def attack() -> None:
        client = guard.client()
        client.rapid_resets(1000, f"{PODS}?limit=1", guard.token("bob"))
        codes.append(_until_closed(client))

    ok, rounds = _well_behaved(guard, 200, attack)
    assert ok >= 198, f"{ok}/200 answered during {rounds} rounds of rapid reset"
    assert rounds >= 2 and codes.count(11) >= rounds - 1  # ENHANCE_YOUR_CALM (the last may be cut short)
    assert guard.metrics()["guard_connections_http2_floods_total"] >= rounds - 1
    assert guard.rss_kib() - before < 64 * 1024
    ordinary = 'guard_requests_in_flight{cluster="sim",kind="ordinary"}'
    for _ in range(100):  # every reset stream's upstream request has ended
        if guard.metrics().get(ordinary) == 0:
            break
        time.sleep(0.1)
    assert guard.metrics().get(ordinary) == 0


def test_continuation_flood_and_huge_header_lists_end_the_connection(guard: Guard) -> None:
    """CONTINUATION flood (1,000 tiny frames after a HEADERS without END_HEADERS) and a header list
    past `http2MaxHeaderListBytes` (40 frames of 16 KiB): GOAWAY and close each time, and the
    well-behaved client keeps ≥ 99 % success."""
    codes: list[int | None] = []

    def attack() -> None:
        client = guard.client()
        if len(codes) % 2:
            client.continuation_flood(40, size=16000)
        else:
            client.continuation_flood(1000)
        codes.append(_until_closed(client))

    before = guard.rss_kib()
    ok, rounds = _well_behaved(guard, 200, attack)
    assert ok >= 198, f"{ok}/200 answered during {rounds} rounds of CONTINUATION floods"
    assert guard.rss_kib() - before < 64 * 1024
    assert rounds >= 2 and sum(code is not None and code != 0 for code in codes) >= rounds - 1
    assert guard.metrics()["guard_connections_http2_errors_total"] >= rounds - 1


@pytest.mark.parametrize("frame", ["ping", "settings", "priority"])
def test_ping_settings_and_priority_floods_get_goaway(guard: Guard, frame: str) -> None:
    """500 PINGs or SETTINGS (or 3,000 PRIORITY frames) in one write: GOAWAY ENHANCE_YOUR_CALM; a
    fresh connection still works."""
    client = guard.client()
    noise = b""
    for i in range(500):
        if frame == "ping":
            client.conn.ping(i.to_bytes(8, "big"))
        elif frame == "settings":
            client.conn.update_settings({SettingCodes.MAX_FRAME_SIZE: 16384 + i})
    if frame == "priority":
        noise = b"".join(PriorityFrame(2 * i + 1, depends_on=0, stream_weight=16).serialize()
                         for i in range(3000))
    client.sock.sendall(client.conn.data_to_send() + noise)
    assert _until_closed(client) == 11
    again = guard.client()
    try:
        assert again.get(f"{PODS}?limit=1", guard.token()).status == 200
    finally:
        again.close()


def test_sigterm_says_goaway_then_ends_watches_cleanly(guard: Guard) -> None:
    """Drain: the client gets GOAWAY NO_ERROR (open streams elsewhere), its watch ends with
    END_STREAM (not a reset: client-go re-watches without an error) and guard exits 0."""
    client = guard.client()
    try:
        watch = client.request("GET", f"{PODS}?watch=1", guard.token())
        assert client.wait(lambda: client.answers[watch].status == 200)
        guard.process.send_signal(signal.SIGTERM)
        assert client.wait(lambda: client.goaway is not None and client.answers[watch].ended)
        assert client.goaway == 0 and client.answers[watch].reset is None
    finally:
        client.close()
    assert guard.process.wait(timeout=20) == 0


def test_a_refusal_before_the_body_has_arrived_resets_the_rest_and_keeps_the_connection(guard: Guard) -> None:
    """Five POSTs with a bad token, each sending 30 KB of a body it never finishes: each gets its
    401 Status, then RST_STREAM NO_ERROR (stop sending, RFC 9113 8.1); 150 KB in all, more than the
    connection's 64 KiB window, so guard gave the window back, and the connection still serves."""
    client = guard.client()
    try:
        for _ in range(5):  # each needs the window the one before used: guard must give it back
            assert client.wait(lambda: client.conn.outbound_flow_control_window >= 30_000)
            stream_id = client.conn.get_next_available_stream_id()
            client.conn.send_headers(stream_id, [
                (":method", "POST"), (":path", PODS), (":scheme", "https"), (":authority", "localhost"),
                ("authorization", "Bearer not-a-token"), ("content-type", "application/json"),
                ("content-length", "1000000")])
            client.conn.send_data(stream_id, b" " * 15_000)
            client.conn.send_data(stream_id, b" " * 15_000)
            client.answers[stream_id] = answer = Answer()
            client.reading.add(stream_id)
            client._flush()
            assert client.wait(lambda a=answer: a.reset is not None)  # type: ignore[misc]
            assert answer.status == 401 and answer.ended and answer.reset == 0
            assert json.loads(answer.body)["kind"] == "Status"
        assert client.get(f"{PODS}?limit=1", guard.token()).status == 200
    finally:
        client.close()


def test_a_stream_stalled_past_write_timeout_is_reset_and_the_connection_lives(
        sim_server: Callable[..., SimServer], tmp_path: Path) -> None:
    """writeTimeout per stream: a watch whose 4 KiB window stays shut with events waiting is reset
    (CANCEL) and its upstream watch ends; a stream beside it on the same connection still answers."""
    g = start_guard(sim_server("--seed-objects", "2"), tmp_path, "limits: {writeTimeout: 2s}\n")
    client = g.client(window=4096)
    try:
        stalled = client.request("GET", f"{PODS}?watch=1&resourceVersion=0", g.token(), read=False)
        assert client.wait(lambda: client.answers[stalled].status == 200)
        for i in range(30):
            assert g.sim.request("POST", PODS, body=_pod(f"stall-{i}"))[0] == 201
        assert client.wait(lambda: client.answers[stalled].reset is not None, timeout=30)
        assert client.answers[stalled].reset == 8  # CANCEL
        assert g.metrics()["guard_connections_write_timeouts_total"] >= 1
        assert client.wait(lambda: _long_running(g) == 0)
        assert client.get(f"{PODS}?limit=1", g.token()).status == 200
    finally:
        client.close()
        g.process.terminate()
        g.process.wait(timeout=20)


def test_a_long_list_passes_within_small_windows(sim_server: Callable[..., SimServer],
                                                 tmp_path: Path) -> None:
    """A LIST of several hundred KB (streamed, not read whole: above relay's 64 KiB) reaches a
    client whose stream windows are 16 KiB, whole: the same items as the api-server's own answer."""
    sim = sim_server("--seed-objects", "600")
    g = start_guard(sim, tmp_path)
    client = g.client(window=16384)
    try:
        status, direct = sim.request("GET", "/api/v1/pods")
        assert status == 200
        answer = client.get("/api/v1/pods", g.token("admin"), timeout=60)
        assert answer.status == 200 and answer.ended and len(answer.body) > 200_000
        assert [p["metadata"]["name"] for p in json.loads(answer.body)["items"]] == [
            p["metadata"]["name"] for p in direct["items"]]
    finally:
        client.close()
        g.process.terminate()
        g.process.wait(timeout=20)


def test_goaway_chance_moves_clients_to_new_connections_without_a_failure(
        sim_server: Callable[..., SimServer], tmp_path: Path) -> None:
    """`http2GoawayChance: 0.02` (the api-server's `--goaway-chance` bound): over 600 requests a
    client is told GOAWAY now and then, moves to a new connection each time, and every request is
    answered."""
    g = start_guard(sim_server("--seed-objects", "2"), tmp_path, "limits: {http2GoawayChance: 0.02}\n")
    ok, connections, client = 0, 1, g.client()
    try:
        for i in range(600):
            if client.goaway is not None or client.closed:
                assert client.goaway in (0, None)
                client.close()
                client, connections = g.client(), connections + 1
            ok += client.get(f"{PODS}?limit={i % 3 + 1}", g.token()).status == 200
    finally:
        client.close()
        g.process.terminate()
        g.process.wait(timeout=20)
    assert ok == 600 and connections >= 2
