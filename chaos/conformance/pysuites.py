"""Third-party Python test suites run against a target: the official client's e2e suites (sync
and asyncio) and kr8s's own tests.

The official suites are someone else's files (../shared/conformance/kubernetes-python-e2e): they
import themselves as `kubernetes.e2e_test`, so they are copied into this environment's
`kubernetes` package for the run and removed after it, and pytest runs from a temporary folder
holding `kubernetes/e2e_test/test_yaml/`. kr8s's tests come from its sdist (`pip download`), with
a conftest of ours in place of theirs: theirs starts a kind cluster, ours hands them the target.
This module must never copy those files into the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from chaos.conformance.results import Result, from_junit
from chaos.conformance.targets import Target

E2E_DIR = "kubernetes-python-e2e"
TIMEOUT_S = 900
KR8S_CONFTEST = '''
import os, subprocess
from pathlib import Path
import pytest

class Cluster:
    """What kr8s's tests want of pytest-kind's KindCluster, pointed at the conformance target."""
    def __init__(self):
        self.kubeconfig_path = Path(os.environ["KUBECONFIG"])
        self.kubectl_path = "kubectl"
    def kubectl(self, *args):
        return subprocess.check_output(["kubectl", *args], text=True)

@pytest.fixture(scope="session", autouse=True)
def k8s_cluster():
    yield Cluster()

@pytest.fixture
def ensure_gc():
    import gc
    gc.collect()
    yield
    gc.collect()
'''


def find_e2e(start: Path) -> Path | None:
    """../shared/conformance/kubernetes-python-e2e from the repository or one of its parents."""
    for parent in [start, *start.parents]:
        candidate = parent / "shared" / "conformance" / E2E_DIR
        if candidate.is_dir():
            return candidate
    return None


def _package_dir() -> Path:
    import kubernetes

    return Path(kubernetes.__file__).parent


def _pytest(args: list[str], cwd: Path, target: Target, report: Path, timeout: float = TIMEOUT_S) -> str:
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "--timeout",
        "120",
        f"--junitxml={report}",
        *args,
    ]
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=target.env(), capture_output=True, text=True, timeout=timeout
        )
        return done.stdout[-4000:]
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f}s"


def official(source: Path | None, target: Target, *, asyncio: bool, only: str = "") -> Result:
    """The official client's e2e suite (sync, or asyncio) against `target`."""
    suite = "python-e2e-asyncio" if asyncio else "python-e2e"
    if source is None:
        return Result(suite, target.kind, note=f"skipped: ../shared/conformance/{E2E_DIR} not found")
    package = _package_dir()
    installed = package / "aio" / "e2e_test" if asyncio else package / "e2e_test"
    if asyncio and not (package / "aio").is_dir():
        return Result(suite, target.kind, note="skipped: this kubernetes package has no asyncio client")
    with tempfile.TemporaryDirectory(prefix="conformance-e2e-") as temp:
        workdir = Path(temp)
        shutil.copytree(source / "e2e_test" / "test_yaml", workdir / "kubernetes" / "e2e_test" / "test_yaml")
        shutil.rmtree(installed, ignore_errors=True)
        shutil.copytree(source / ("aio_e2e_test" if asyncio else "e2e_test"), installed)
        try:
            module = "kubernetes.aio.e2e_test" if asyncio else "kubernetes.e2e_test"
            args = ["--pyargs", module, *(["-k", only] if only else [])]
            report = target.workdir / f"{suite}.xml"
            output = _pytest(args, workdir, target, report)
            return from_junit(suite, target.kind, report, note="" if report.exists() else output[-300:])
        finally:
            shutil.rmtree(installed, ignore_errors=True)


def kr8s(target: Target, *, only: str = "") -> Result:
    """kr8s's own test suite (from its sdist) against `target`."""
    suite = "kr8s"
    with tempfile.TemporaryDirectory(prefix="conformance-kr8s-") as temp:
        workdir = Path(temp)
        fetched = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                temp,
                "kr8s",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        sdists = list(workdir.glob("kr8s-*.tar.gz"))
        if fetched.returncode != 0 or not sdists:
            return Result(
                suite, target.kind, note=f"skipped: could not download kr8s's sdist: {fetched.stderr[-200:]}"
            )
        with tarfile.open(sdists[0]) as archive:
            archive.extractall(workdir, filter="data")
        root = next(p for p in workdir.iterdir() if p.is_dir())
        (root / "conftest.py").write_text(KR8S_CONFTEST)
        report = target.workdir / "kr8s.xml"
        args = ["kr8s/tests", "-p", "no:randomly", *(["-k", only] if only else [])]
        output = _pytest(args, root, target, report)
        return from_junit(suite, target.kind, report, note="" if report.exists() else output[-300:])
