"""The TLS handshake of one client connection, started on a socket guard accepted and counted
itself (guard.http.server), so that a connection counts against `maxConnections` before it sends a
byte of TLS and is closed when the handshake takes longer than `handshakeTimeout`. The same bound
holds for the closing exchange (close_notify): a client that never answers it cannot keep a closed
connection for the loop's default 30 s.

The event loop's own TLS (`connect_accepted_socket(ssl=...)`) does the work; this module only owns
the socket until the loop takes it, and says how the handshake ended. It must never log what a
client sent.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable


class Handshake:
    """TLS for one accepted socket: `protocol().connection_made` when it is done, else `over(failed)`
    (`failed`: the handshake itself failed, rather than being cancelled or losing its socket)."""

    __slots__ = ("_over", "_sock", "task")

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, timeout: float,
                 protocol: Callable[[], asyncio.Protocol], over: Callable[[bool], None]) -> None:
        self._sock: socket.socket | None = sock
        """The socket, until the loop's transport owns it."""
        self._over = over
        self.task = asyncio.get_running_loop().create_task(self._run(sock, context, timeout, protocol))

    async def _run(self, sock: socket.socket, context: ssl.SSLContext, timeout: float,
                   protocol: Callable[[], asyncio.Protocol]) -> None:
        self._sock = None  # the transport owns the socket from here on
        try:
            transport, _ = await asyncio.get_running_loop().connect_accepted_socket(
                protocol, sock, ssl=context, ssl_handshake_timeout=timeout, ssl_shutdown_timeout=timeout)
        except asyncio.CancelledError:
            self._over(False)
            raise
        except Exception:  # too slow, reset, not TLS, an unknown CA: all end the same way
            self._over(True)
            return
        if transport.is_closing():  # the socket closed under the handshake: the loop calls it a success
            self._over(False)

    def cancel(self) -> None:
        """Stop now: close the socket if the loop never took it, else let its transport close it."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self.task.cancel()
