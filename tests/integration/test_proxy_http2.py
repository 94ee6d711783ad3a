"""HTTP/2 on guard's TLS listener (ALPN h2), with the simulator as the api-server: a raw h2 client
(tests/h2client.py) multiplexes requests and watches on one connection through the same pipeline as
HTTP/1.1 (identity, admission, forwarding), one stream that stops reading does not stall another,
a client reset frees the stream's upstream request, floods end the attacker's connection while a
well-behaved client keeps ≥ 99 % success, GOAWAY on SIGTERM, and HTTP/1.1 on the same port.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from guard.cli.certs import make_ca, make_server_cert, write_pair
from tests.conftest import SimServer
from tests.h2client import H2Client

PODS = "/api/v1/namespaces/team-a/pods"


@dataclass
class Guard:
    process: subprocess.Popen[str]
    host: str
    port: int
    ca: Path
    access_log: Path
    admin: str
    sim: SimServer

    def client(self, **kwargs: int) -> H2Client:
        return H2Client(self.host, self.port, self.ca, **kwargs)

    def token(self, user: str = "alice") -> str:
        return self.sim.tokens[user]

    def log_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line.strip()]

    def wait_log(self, keep: Callable[[dict[str, object]], bool], count: int) -> list[dict[str, object]]:
        """The access log's lines that `keep` keeps, once there are `count` (or after 10 s)."""
        lines: list[dict[str, object]] = []
        for _ in range(200):
            lines = [line for line in self.log_lines() if keep(line)]
            if len(lines) >= count:
                break
            time.sleep(0.05)
        return lines

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.admin + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("guard_connections_"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


def start_guard(sim: SimServer, tmp_path: Path, limits: str = "") -> Guard:
    certs = tmp_path / "guard-certs"
    certs.mkdir(exist_ok=True)
    ca = make_ca()
    write_pair(certs, "ca", ca)
    write_pair(certs, "server", make_server_cert(ca))
    log = tmp_path / "access.log"
    config = tmp_path / "guard.yaml"
    config.write_text(
        f"listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\n"
        f"tls: {{cert: {certs}/server.crt, key: {certs}/server.key}}\n"
        f"clusters:\n  - name: sim\n    server: {sim.url}\n    token: {sim.tokens['admin']}\n"
        f"forwarding: passthrough\naccessLog: {{path: {log}}}\n{limits}")
    process = subprocess.Popen([sys.executable, "-m", "guard.cli", "serve", "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("guard serving https://"), line
    url, admin = line.split()[2], line.split()[4]
    host, port = url.removeprefix("https://").rsplit(":", 1)
    return Guard(process, host, int(port), certs / "ca.crt", log, admin, sim)


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
