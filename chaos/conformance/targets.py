"""The two things a conformance suite runs against: the simulator alone (`--tls`, as kubectl needs
for tokens) and guard in passthrough with TLS in front of it.

A `Target` is a kubeconfig (admin's token, the right CA inlined) and the processes behind it; it
is a context manager, and every process it starts is stopped on the way out, even on failure. It
must never leave a process or a listening socket behind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from chaos.ports import free_ports

READY_S = 30.0
ADMIN = "kubernetes-admin"
"""kind's admin user: clients' suites check `whoami` against it."""
KINDS = ("sim", "guard")


@dataclass
class Target:
    kind: str
    """"sim" (the simulator alone) or "guard" (guard in passthrough in front of it)."""
    workdir: Path
    system_pods: bool = True
    kubeconfig: Path = field(init=False)
    server: str = field(init=False, default="")
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __enter__(self) -> Target:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            token, sim_url, sim_ca = self._start_sim()
            self.server, ca = (
                (sim_url, sim_ca) if self.kind == "sim" else self._start_guard(token, sim_url, sim_ca)
            )
            self.kubeconfig = self._write_kubeconfig(token, ca)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()

    def env(self) -> dict[str, str]:
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HOME": str(home),
            "KUBECACHEDIR": str(home / "cache"),
        }

    def _spawn(self, name: str, argv: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.processes.append(process)
        return process, log

    def _start_sim(self) -> tuple[str, str, Path]:
        token = secrets.token_hex(16)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{token},{ADMIN},1,"system:masters"\n')
        port = free_ports(1)
        argv = [
            sys.executable,
            "-m",
            "chaos",
            "sim",
            "--listen",
            f"127.0.0.1:{port}",
            "--tls",
            "--cert-dir",
            str(self.workdir / "sim-certs"),
            "--token-file",
            str(tokens),
        ]
        if self.system_pods:
            argv.append("--system-pods")
        argv += ["--client-ca", str(self._client_certificate())]
        process, log = self._spawn("sim", argv)
        _wait_for(process, log, "serving ")
        return token, f"https://127.0.0.1:{port}", self.workdir / "sim-certs" / "ca.crt"

    def _client_certificate(self) -> Path:
        """kind's kubeconfig authenticates with a client certificate; ours carries one too (and a token,
        which is what guard's passthrough forwards). Returns the CA the simulator trusts for it."""
        from guard.cli.certs import make_ca, make_client_cert, write_pair

        ca = make_ca("kubernetes-client-ca")
        write_pair(self.workdir, "client-ca", ca)
        write_pair(self.workdir, "admin", make_client_cert(ca, ADMIN, ["system:masters"]))
        return self.workdir / "client-ca.crt"

    def _start_guard(self, token: str, sim_url: str, sim_ca: Path) -> tuple[str, Path]:
        from guard.cli.certs import make_ca, make_server_cert, write_pair

        certs = self.workdir / "guard-certs"
        certs.mkdir(exist_ok=True)
        ca = make_ca()
        write_pair(certs, "ca", ca)
        write_pair(certs, "server", make_server_cert(ca))
        listen = free_ports(2)
        admin = listen + 1
        config = self.workdir / "guard.yaml"
        config.write_text(
            f"listen: 127.0.0.1:{listen}\nadmin: 127.0.0.1:{admin}\n"
            f"tls: {{cert: {certs}/server.crt, key: {certs}/server.key}}\n"
            f"clusters:\n  - name: sim\n    server: {sim_url}\n    token: {token}\n    caFile: {sim_ca}\n"
            "forwarding: passthrough\naccessLog: {enabled: false}\n"
        )
        process, log = self._spawn(
            "guard", [sys.executable, "-m", "guard.cli", "serve", "--config", str(config)]
        )
        _wait_for(process, log, "guard serving ")
        return f"https://127.0.0.1:{listen}", certs / "ca.crt"

    def _write_kubeconfig(self, token: str, ca: Path) -> Path:
        data = base64.b64encode(ca.read_bytes()).decode()
        user = {
            "token": token,
            "client-certificate-data": base64.b64encode((self.workdir / "admin.crt").read_bytes()).decode(),
            "client-key-data": base64.b64encode((self.workdir / "admin.key").read_bytes()).decode(),
        }
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "admin",
            "clusters": [
                {"name": self.kind, "cluster": {"server": self.server, "certificate-authority-data": data}}
            ],
            "users": [{"name": ADMIN, "user": user}],
            "contexts": [
                {"name": "admin", "context": {"cluster": self.kind, "user": ADMIN, "namespace": "default"}}
            ],
        }
        path = self.workdir / "kubeconfig"
        path.write_text(json.dumps(config))
        return path


def _wait_for(process: subprocess.Popen[bytes], log: Path, needle: str) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if needle in log.read_text(errors="replace"):
                return
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"{log.stem} did not start: {log.read_text(errors='replace')[-2000:]}")
