"""`python -m chaos sim` answers bad input with one clear line, and its replicas share one store."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import SimServer


def sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaos", "sim", *args], capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--token-file", "/nonexistent/tokens.csv"], "/nonexistent/tokens.csv"),
        (["--bootstrap", "/nonexistent/rbac.yaml"], "/nonexistent/rbac.yaml"),
        (["--listen", "nowhere"], "HOST:PORT"),
        (
            ["--cert-file", "/nonexistent/tls.crt", "--key-file", "/nonexistent/tls.key"],
            "/nonexistent/tls.crt",
        ),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], complaint: str) -> None:
    """Exit non-zero naming what is wrong, without a traceback."""
    result = sim(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert complaint in result.stderr.strip().splitlines()[-1]  # argparse prints its usage above


def test_bad_bootstrap_kind_names_the_file(tmp_path: Path) -> None:
    """A bootstrap object of a kind the simulator lacks is refused before serving."""
    bad = tmp_path / "rbac.yaml"
    bad.write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: n}\n")
    result = sim("--bootstrap", str(bad))
    assert result.returncode == 2 and str(bad) in result.stderr and "example.com/v1/Widget" in result.stderr


def test_help_lists_the_options() -> None:
    """--help documents the options of the contract."""
    result = sim("--help")
    assert result.returncode == 0
    for option in (
        "--listen",
        "--replicas",
        "--tls",
        "--token-file",
        "--client-ca",
        "--seed-objects",
        "--memory-budget-mb",
        "--restart-delay-s",
    ):
        assert option in result.stdout


def test_replicas_share_one_store(sim_server: Callable[..., SimServer]) -> None:
    """An object created through replica 0 is read through replica 1."""
    server = sim_server(replicas=2)
    status, _ = server.request(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        body={"metadata": {"name": "shared"}, "data": {"k": "v"}},
    )
    assert status == 201
    other = SimServer(server.process, server.urls[1:], server.tokens, server.workdir)
    status, body = other.request("GET", "/api/v1/namespaces/default/configmaps/shared")
    assert status == 200 and body["data"] == {"k": "v"}
