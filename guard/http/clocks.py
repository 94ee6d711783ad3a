"""The clocks of one client connection that the server's sweep reads: when a request body must have
arrived (`BodyClock`), and since when the client has taken no byte of what waits for it
(`StallClock`).

What waits for a client is what guard queued in the transport and what the kernel still holds
unsent in the socket (Linux tells: SIOCOUTQ); a client whose share of both stays the same for
`writeTimeout` takes nothing; `reset` makes closing it drop the lot. A watch with nothing to send,
or a client that reads however slowly, never stalls. Bookkeeping and two socket calls: it must
never close or write anything itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct
import termios
from typing import Any

from aiohttp.streams import StreamReader

_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None)
"""SIOCOUTQ, which Linux spells TIOCOUTQ for sockets too: bytes the kernel has not sent yet."""


def unsent(sock: Any) -> int:
    """Bytes the kernel still holds to send on `sock` (a socket or uvloop's stand-in); 0 where it
    cannot say."""
    if _OUTQ is None or sock is None:
        return 0
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0])
    except (OSError, ValueError):
        return 0


def reset(sock: Any) -> None:
    """Make closing `sock` reset the connection at once (SO_LINGER 0), dropping what the kernel
    still holds for a client that takes nothing (nginx's reset_timedout_connection)."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class BodyClock:
    """The request body still arriving, and when it must have arrived whole."""

    __slots__ = ("deadline", "payload")

    def __init__(self, payload: StreamReader, deadline: float) -> None:
        self.payload = payload
        self.deadline = deadline

    def overdue(self, now: float) -> bool | None:
        """True once the deadline passed with the body incomplete; None when the body has arrived
        (or failed) and the clock can go."""
        if self.payload.is_eof() or self.payload.exception() is not None:
            return None
        return now >= self.deadline


class StallClock:
    """Since when the client has taken no byte of what waits for it."""

    __slots__ = ("_since", "_taken")

    def __init__(self) -> None:
        self._taken = 0
        self._since: float | None = None

    def stalled_for(self, now: float, sent: int, waiting: int) -> float:
        """Seconds the client has taken nothing while `waiting` bytes (of `sent` so far) wait."""
        if not waiting:
            self._since = None
            return 0.0
        taken = sent - waiting
        if self._since is None or taken != self._taken:
            self._taken, self._since = taken, now
            return 0.0
        return now - self._since
