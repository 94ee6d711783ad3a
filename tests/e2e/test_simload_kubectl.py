"""The real kubectl (v1.32) streams `logs -f` and runs `exec` against the simulated api-server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.processes import Processes, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH"),
]
TOKEN = "simload-e2e-admin"


@pytest.fixture
def kubectl(tmp_path: Path) -> Iterator[list[str]]:
    """A kubectl command line aimed at a TLS simulator holding pod seed-0 in namespace seed-0."""
    (tmp_path / "tokens.csv").write_text(f'{TOKEN},admin,admin-uid,"system:masters"\n')
    port = free_port()
    argv = [sys.executable, "-m", "chaos", "sim", "--listen", f"127.0.0.1:{port}", "--tls",
            "--cert-dir", str(tmp_path / "certs"), "--token-file", str(tmp_path / "tokens.csv"),
            "--seed-objects", "1"]  # fmt: skip
    with Processes(tmp_path) as procs:
        proc = procs.spawn("sim", argv)
        deadline = time.monotonic() + 30
        while "ca-file" not in proc.log_path.read_text():
            if not proc.alive or time.monotonic() > deadline:
                pytest.fail(f"simulator did not start:\n{proc.log_tail()}")
            time.sleep(0.05)
        # kubectl sends bearer tokens only over TLS, hence --tls and the generated CA.
        yield ["kubectl", f"--server=https://127.0.0.1:{port}", f"--token={TOKEN}",
               f"--certificate-authority={tmp_path / 'certs' / 'ca.crt'}",
               f"--cache-dir={tmp_path / 'cache'}", "--namespace=seed-0"]  # fmt: skip


def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}


def test_exec_echo_prints_hi(kubectl: list[str], tmp_path: Path) -> None:
    """`kubectl exec POD -- echo hi` prints hi and exits 0 over the v5 WebSocket protocol."""
    result = subprocess.run([*kubectl, "exec", "seed-0", "--", "echo", "hi"], capture_output=True, text=True,
                            timeout=30, env=env(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"


def test_exec_exit_code_reaches_kubectl(kubectl: list[str], tmp_path: Path) -> None:
    """A command exiting 3 makes kubectl exit 3, with its stderr on kubectl's stderr."""
    script = "echo oops >&2; exit 3"
    result = subprocess.run([*kubectl, "exec", "seed-0", "--", "sh", "-c", script], capture_output=True,
                            text=True, timeout=30, env=env(tmp_path))  # fmt: skip
    assert result.returncode == 3
    assert "oops" in result.stderr


def test_exec_stdin_reaches_cat(kubectl: list[str], tmp_path: Path) -> None:
    """`kubectl exec -i POD -- cat` echoes stdin back and ends when stdin closes."""
    result = subprocess.run([*kubectl, "exec", "-i", "seed-0", "--", "cat"], input="piped\n",
                            capture_output=True, text=True, timeout=30, env=env(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "piped\n"


def test_logs_follow_receives_streamed_lines(kubectl: list[str], tmp_path: Path) -> None:
    """`kubectl logs -f` keeps receiving new numbered lines while it stays connected."""
    with pytest.raises(subprocess.TimeoutExpired) as stopped:
        subprocess.run(
            [*kubectl, "logs", "-f", "seed-0"], capture_output=True, timeout=4.5, env=env(tmp_path)
        )
    lines = (stopped.value.stdout or b"").decode().splitlines()
    numbers = [int(line.rsplit(" ", 1)[1]) for line in lines if "hello from seed-0/" in line]
    assert len(numbers) >= 2
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
