"""Free loopback ports for the processes the test bed, the benchmark and the tests start.

A port is only free when it is probed; the process that will listen on it binds it a moment later.
Ports picked by binding port 0 come from the kernel's ephemeral range, the same range every outbound
connection takes its local port from, so on a busy machine another process's connection could take
the port in between ("address already in use"). These ports come from below that range instead
(`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 by default), where only another listener
could collide, and are probed with SO_REUSEADDR like the servers bind them (a port in TIME_WAIT is free).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 20000


def listen_span() -> tuple[int, int]:
    """(first, last) of the ports to pick from: below the ephemeral range, else above it."""
    low, high = 32768, 60999
    try:
        low, high = (int(x) for x in EPHEMERAL.read_text().split())
    except (OSError, ValueError):
        pass
    if low - LOWEST >= 2000:
        return LOWEST, low - 1
    return high + 1, 65535


def _all_free(first: int, count: int, step: int) -> bool:
    sockets: list[socket.socket] = []
    try:
        for port in range(first, first + count * step, step):
            s = socket.socket()
            sockets.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for s in sockets:
            s.close()


def free_ports(count: int = 1, *, step: int = 1) -> int:
    """The first of `count` loopback ports `step` apart, all free now (the simulator's replicas
    listen on consecutive ports; a Redis Cluster node on port and port + 10000)."""
    first, last = listen_span()
    highest = last - (count - 1) * step
    for _ in range(500):
        port = random.randint(first, highest) if highest >= first else 0
        if port and _all_free(port, count, step):
            return port
    raise RuntimeError(f"no {count} free loopback ports {step} apart between {first} and {last}")


def free_port() -> int:
    return free_ports(1)
