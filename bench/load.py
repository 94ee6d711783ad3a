"""Load generation with wrk: a fixed number of connections GETting one small object with a bearer
token, and exact figures (requests/s, p50/p99, non-2xx) printed by wrk's Lua `done()` as JSON.
It must never parse wrk's human-readable summary (rounded, unit-suffixed).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Skip

GET_PATH = "/api/v1/namespaces/default/pods/bench-pod"
BENCH_TOKEN = "bench-client-token"
CONNECTIONS = 32
THREADS = 2

SCRIPT = """
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["Accept"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%%d,"duration_us":%%d,"non2xx":%%d,"socket_errors":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class LoadResult:
    """One wrk run: throughput, latency percentiles in milliseconds, failures."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: int
    cpu_us: float = 0.0
    """CPU time the target spent per request during the run (user + system, its processes), µs."""

    @property
    def failed_share(self) -> float:
        return (self.non2xx + self.socket_errors) / max(1, self.requests)


def write_script(workdir: Path) -> Path:
    path = workdir / "bench.lua"
    path.write_text(SCRIPT % {"token": BENCH_TOKEN})
    return path


def run_wrk(port: int, seconds: float, script: Path, *, connections: int = CONNECTIONS,
            scheme: str = "http") -> LoadResult:
    """Run wrk against 127.0.0.1:port for `seconds`; raise Skip when wrk is missing or fails."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise Skip("wrk not found (scripts/system-deps.sh wrk)")
    duration = f"{max(1, round(seconds))}s"
    argv = [wrk, f"-t{THREADS}", f"-c{connections}", f"-d{duration}", "--timeout", "10s", "-s", str(script)]
    done = subprocess.run([*argv, f"{scheme}://127.0.0.1:{port}{GET_PATH}"], capture_output=True, text=True,
                          timeout=seconds + 30)  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise Skip(f"wrk failed: {(done.stderr or done.stdout).strip()[:160]}")
    return parse(lines[-1])


def parse(line: str) -> LoadResult:
    raw = json.loads(line)
    return LoadResult(
        rps=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        requests=raw["requests"],
        non2xx=raw["non2xx"],
        socket_errors=raw["socket_errors"],
    )
