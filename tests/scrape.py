"""Read guard's /metrics and a process's memory in tests: `figures(admin_url)` gives every sample
without labels by name, and with labels as `name{label="value",...}`; `rss_mib(pid)`."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp


async def figures(admin: str) -> dict[str, float]:
    """Every sample of guard's /metrics, keyed by its series as written in the exposition."""
    async with aiohttp.ClientSession() as session, session.get(admin + "/metrics") as answer:
        text = await answer.text()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return samples


def rss_mib(pid: int) -> float:
    """The resident set of process `pid`, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def trusting(ca: Path) -> ssl.SSLContext:
    """A client TLS context that trusts `ca` (guard's serving certificate names 127.0.0.1)."""
    return ssl.create_default_context(cafile=str(ca))
