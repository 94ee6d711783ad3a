"""kubectl's typed verbs and the commands that wait, stream or tunnel, run by a real kubectl
against a target: every `kubectl create` subcommand of 1.32's help, api-resources, wait, rollout
status/history/undo, exec, attach, port-forward, cp, debug and server-side apply.

Each check is a name and a function of a `Runner` that raises `CheckFailed` with the reason; the
suite counts them as a test runner would. Older and newer kubectl binaries run the subset their
versions share. It must never leave a kubectl process behind: background ones are killed.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chaos.conformance.results import Failure, Result
from chaos.conformance.targets import Target
from chaos.ports import free_ports

VERSIONS_DIR = Path("/usr/lib/google-cloud-sdk/bin")
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: applied}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: applied}}
  template:
    metadata: {labels: {app: applied}}
    spec: {containers: [{name: web, image: nginx}]}
"""


class CheckFailed(Exception):
    """A check saw what a real cluster would not show."""


@dataclass
class Runner:
    kubectl: str
    target: Target

    def run(self, *args: str, stdin: str | None = None, timeout: float = 30, ok: bool = True) -> str:
        done = subprocess.run(
            [self.kubectl, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.target.env(),
        )
        if ok and done.returncode != 0:
            raise CheckFailed(f"kubectl {' '.join(args)}: {done.stderr.strip()[-300:]}")
        return done.stdout

    def background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.kubectl, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.target.env(),
        )


def _expect(condition: bool, why: str) -> None:
    if not condition:
        raise CheckFailed(why)


def _tls_files(runner: Runner) -> tuple[str, str]:
    from guard.cli.certs import make_ca, make_server_cert, write_pair

    write_pair(runner.target.workdir, "typed", make_server_cert(make_ca()))
    return str(runner.target.workdir / "typed.crt"), str(runner.target.workdir / "typed.key")


CREATES: list[tuple[str, ...]] = [
    ("namespace", "typed-ns"),
    ("configmap", "typed-cm", "--from-literal=a=b"),
    ("secret", "generic", "typed-s", "--from-literal=a=b"),
    ("secret", "docker-registry", "typed-dr", "--docker-username=u", "--docker-password=p"),
    ("serviceaccount", "typed-sa"),
    ("deployment", "typed-d", "--image=nginx", "--replicas=2"),
    ("role", "typed-r", "--verb=get", "--resource=pods"),
    ("clusterrole", "typed-cr", "--verb=get", "--resource=pods"),
    ("rolebinding", "typed-rb", "--role=typed-r", "--user=u"),
    ("clusterrolebinding", "typed-crb", "--clusterrole=typed-cr", "--user=u"),
    ("service", "clusterip", "typed-svc", "--tcp=80:8080"),
    ("service", "nodeport", "typed-np", "--tcp=80:8080"),
    ("service", "loadbalancer", "typed-lb", "--tcp=80:8080"),
    ("service", "externalname", "typed-en", "--external-name=example.com"),
    ("token", "typed-sa"),
    ("job", "typed-j", "--image=busybox"),
    ("cronjob", "typed-cj", "--image=busybox", "--schedule=*/5 * * * *"),
    ("job", "typed-j2", "--from=cronjob/typed-cj"),
    ("priorityclass", "typed-pc", "--value=100"),
    ("quota", "typed-q", "--hard=pods=10"),
    ("poddisruptionbudget", "typed-pdb", "--selector=app=x", "--min-available=1"),
    ("ingress", "typed-ing", "--rule=foo.com/bar=typed-svc:80"),
]


def _create(args: tuple[str, ...]) -> Callable[[Runner], None]:
    def check(runner: Runner) -> None:
        runner.run("create", *args)

    return check


def create_secret_tls(runner: Runner) -> None:
    cert, key = _tls_files(runner)
    runner.run("create", "secret", "tls", "typed-tls", f"--cert={cert}", f"--key={key}")


def api_resources(runner: Runner) -> None:
    lines = runner.run("api-resources", "--no-headers").splitlines()
    names = {line.split()[0] for line in lines if line.strip()}
    for wanted in ("pods", "deployments", "jobs", "nodes", "replicasets", "apiservices", "flowschemas"):
        _expect(wanted in names, f"api-resources lacks {wanted}")


def wait_and_rollout(runner: Runner) -> None:
    runner.run("create", "deployment", "rolled", "--image=nginx:1", "--replicas=2")
    runner.run("wait", "--for=condition=Available", "deployment/rolled", "--timeout=20s")
    runner.run("rollout", "status", "deployment/rolled", "--timeout=20s")
    runner.run("set", "image", "deployment/rolled", "nginx=nginx:2")
    runner.run("rollout", "status", "deployment/rolled", "--timeout=20s")
    runner.run("rollout", "undo", "deployment/rolled")
    history = runner.run("rollout", "history", "deployment/rolled")
    revisions = [words[0] for words in map(str.split, history.splitlines()) if words and words[0].isdigit()]
    _expect(revisions == ["2", "3"], f"history after undo: {history!r}")
    image = runner.run("get", "deployment/rolled", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    _expect(image == "nginx:1", f"undo left image {image!r}")


def _pod(runner: Runner, name: str, image: str = "busybox") -> None:
    runner.run("run", name, f"--image={image}", "--", "sleep", "3600")
    runner.run("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=20s")


def exec_exit_code(runner: Runner) -> None:
    _pod(runner, "execd")
    out = runner.run("exec", "execd", "--", "sh", "-c", "echo out; exit 3", ok=False)
    _expect(out == "out\n", f"exec printed {out!r}")
    done = subprocess.run(
        [runner.kubectl, "exec", "execd", "--", "false"],
        env=runner.target.env(),
        capture_output=True,
        timeout=30,
    )
    _expect(done.returncode == 1, f"exec false exited {done.returncode}")


def attach(runner: Runner) -> None:
    _pod(runner, "attached")
    process = runner.background("attach", "attached")
    try:
        out, _ = process.communicate(timeout=4)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    _expect("hello from attached" in (out or ""), f"attach printed {out!r}")


def port_forward(runner: Runner) -> None:
    _pod(runner, "forwarded", "nginx")
    port = free_ports(1)
    process = runner.background("port-forward", "pod/forwarded", f"{port}:80")
    try:
        body = ""
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as answer:
                    body = answer.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        _expect("Welcome to nginx!" in body, f"port-forward answered {body[:80]!r}")
    finally:
        process.kill()
        process.communicate()


def copy(runner: Runner) -> None:
    _pod(runner, "copied")
    source = runner.target.workdir / "copy-in.txt"
    source.write_text("hello cp\n")
    runner.run("cp", str(source), "copied:/tmp/in.txt")
    _expect(runner.run("exec", "copied", "--", "cat", "/tmp/in.txt") == "hello cp\n", "cp to the pod")
    back = runner.target.workdir / "copy-out.txt"
    runner.run("cp", "copied:/tmp/in.txt", str(back))
    _expect(back.read_text() == "hello cp\n", "cp from the pod")


def debug(runner: Runner) -> None:
    _pod(runner, "debugged")
    runner.run("debug", "debugged", "--image=busybox", "-c", "dbg", "--profile=general", "--", "sleep", "60")
    statuses = runner.run(
        "get", "pod", "debugged", "-o", "jsonpath={.status.ephemeralContainerStatuses[0].name}"
    )
    _expect(statuses == "dbg", f"ephemeral container status {statuses!r}")
    _expect(runner.run("exec", "debugged", "-c", "dbg", "--", "echo", "hi") == "hi\n", "exec in the debugger")


def interactive(runner: Runner) -> None:
    """`kubectl run -i --rm -- sh` and `kubectl debug -i -- sh` read their commands from stdin."""
    script = "echo hi from sh\nexit\n"
    ran = runner.run("run", "-i", "--rm", "shelly", "--image=busybox", "--restart=Never", "--", "sh",
                     stdin=script)  # fmt: skip
    _expect("hi from sh" in ran, f"run -i printed {ran!r}")
    _pod(runner, "debugged-i")
    debug_args = ("debug", "-i", "debugged-i", "--image=busybox", "-c", "dbg", "--profile=general")
    debug_args += ("--", "sh")
    debugged = runner.run(*debug_args, stdin=script)
    _expect("hi from sh" in debugged, f"debug -i printed {debugged!r}")


def server_side_apply(runner: Runner) -> None:
    runner.run("apply", "--server-side", "-f", "-", stdin=DEPLOYMENT.replace("REPLICAS", "1"))
    runner.run("apply", "--server-side", "-f", "-", stdin=DEPLOYMENT.replace("REPLICAS", "2"))
    clash = runner.run(
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        "-",
        stdin=DEPLOYMENT.replace("REPLICAS", "3"),
        ok=False,
    )
    _expect(clash == "", "a conflicting apply by another manager went through")


def checks(version: str) -> list[tuple[str, Callable[[Runner], None]]]:
    """The checks for one kubectl minor: all of them for 1.32, the shared subset for the others."""
    everything = [
        (f"create {' '.join(a[:2] if a[0] in ('secret', 'service') else a[:1])}", _create(a)) for a in CREATES
    ]
    everything += [
        ("create secret tls", create_secret_tls),
        ("api-resources", api_resources),
        ("wait + rollout status/history/undo", wait_and_rollout),
        ("exec exit code", exec_exit_code),
        ("attach", attach),
        ("port-forward", port_forward),
        ("cp", copy),
        ("debug", debug),
        ("run -i / debug -i", interactive),
        ("apply --server-side", server_side_apply),
    ]
    if version == "1.32":
        return everything
    subset = (
        "create namespace",
        "create configmap",
        "create deployment",
        "api-resources",
        "exec exit code",
        "port-forward",
        "cp",
        "apply --server-side",
        "wait + rollout status/history/undo",
    )
    return [c for c in everything if c[0] in subset]


def binary(version: str) -> str | None:
    if version == "1.32":
        return "kubectl"
    path = VERSIONS_DIR / f"kubectl.{version}"
    return str(path) if path.exists() else None


def suite(version: str, target: Target, *, only: str = "") -> Result:
    name = f"kubectl-{version}"
    kubectl = binary(version)
    if kubectl is None:
        return Result(name, target.kind, note=f"skipped: kubectl {version} not installed")
    runner, passed, failures = Runner(kubectl, target), 0, []
    for check_name, check in checks(version):
        if only and only not in check_name:
            continue
        try:
            check(runner)
            passed += 1
        except (CheckFailed, subprocess.TimeoutExpired, OSError) as e:
            failures.append(Failure(check_name, str(e).splitlines()[0][:160] if str(e) else type(e).__name__))
    return Result(name, target.kind, passed=passed, failed=len(failures), failures=tuple(failures))
