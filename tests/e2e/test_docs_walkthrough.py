"""docs/running.md's walkthrough, run as written: every shell block between its `walkthrough` markers,
in order, in one bash (only the ports and the working directory moved to free ones), with the real
kubectl. A reader who copies and pastes gets what the page says: alice works through guard, goes over
her quota, kubectl waits out the 429 and succeeds, and the metrics and access log show it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from chaos.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "running.md"
pytestmark = pytest.mark.e2e


def walkthrough_script() -> str:
    """The page's shell blocks between the markers, dedented, in order."""
    text = DOC.read_text()
    section = text[text.index("<!-- walkthrough: begin -->"):text.index("<!-- walkthrough: end -->")]
    blocks = re.findall(r"^( *)```sh\n(.*?)^\1```", section, re.S | re.M)
    assert len(blocks) >= 8, "the walkthrough lost its commands"
    return "\n".join("\n".join(line[len(indent):] for line in body.splitlines()) for indent, body in blocks)


def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    sim, main, admin = (str(free_ports(1)) for _ in range(3))
    script = walkthrough_script()
    for old, new in (("127.0.0.1:6443", f"127.0.0.1:{sim}"), ("127.0.0.1:7443", f"127.0.0.1:{main}"),
                     ("127.0.0.1:7444", f"127.0.0.1:{admin}"), ("/tmp/guard-demo", str(tmp_path / "demo"))):
        script = script.replace(old, new)
    prologue = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    env = {**os.environ, "HOME": str(tmp_path), "KUBECACHEDIR": str(tmp_path / "kube-cache")}
    done = subprocess.run(["bash", "-c", prologue + script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "policies/team-a.yaml: OK: tenant team-a" in out
    assert f"guard serving https://127.0.0.1:{main} admin http://127.0.0.1:{admin}" in out
    assert out.count("Username    alice") == 2  # by token and by client certificate
    assert 'deployment "web" successfully rolled out' in out
    lists = [line for line in out.splitlines() if "GET https://" in line and "/pods" in line]
    assert any("429 Too Many Requests" in line for line in lists), out  # over quota...
    assert sum("200 OK" in line for line in lists) == 5  # ...yet each of the five got its pods
    rejections = r'guard_admission_rejections_total\{cluster="dev",reason="quota",tenant="team-a"\} [1-9]'
    assert re.search(rejections, out)
    assert '"status":429' in out and '"tenant":"team-a"' in out
