"""A TCP fault proxy on loopback: put it between guard and Redis, or guard and an api-server, and
make the link slow, thin, flaky, silent or gone while traffic flows.

`FaultProxy(listen_port=0, target=(host, port))`; after `await start()` it listens on `.port` and
forwards bytes unchanged both ways. Faults are plain attributes, settable at any time and applied
to the next chunk or connection: `latency` (seconds added to each chunk, each direction),
`bandwidth` (bytes/s per direction, 0 = unlimited), `drop` (probability that a new connection is
closed at once), `blackhole` (read and discard, never forward or answer). Actions:
`reset()` sends RST on every current connection, `await refuse()` stops listening so connects are
refused, `await restore()` clears every fault and listens again on the same port.
As a process: `python -m chaos.faults --listen P --target H:P [--control C]`; the control port takes
one command per line (`latency 0.2`, `bandwidth 10000`, `drop 0.5`, `blackhole on`, `reset`,
`refuse`, `restore`) and answers `ok` or `error: ...`.
It never alters the bytes it forwards and never listens beyond the host it is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

CHUNK = 65536


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client's side, the target's side and the two pumps."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.upstream) if w is not None]


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    # SO_LINGER with a zero timeout turns close() into an RST instead of a FIN.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """A byte-exact TCP forwarder whose link faults can be switched on and off live."""

    def __init__(
        self, listen_port: int = 0, target: tuple[str, int] = ("127.0.0.1", 0), *, host: str = "127.0.0.1"
    ) -> None:
        self.host = host
        self.target = target
        self.latency = 0.0
        self.bandwidth = 0.0
        self.drop = 0.0
        self.blackhole = False
        self._port = listen_port
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self.accepted = 0
        """Connections accepted so far (dropped ones included)."""

    @property
    def port(self) -> int:
        return self._port

    @property
    def connections(self) -> int:
        return len(self._links)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self._port, reuse_address=True)
        self._port = self._server.sockets[0].getsockname()[1]

    async def refuse(self) -> None:
        """Stop listening: new connects are refused; current connections carry on."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def restore(self) -> None:
        """Clear every fault and listen again on the same port."""
        self.latency = self.bandwidth = self.drop = 0.0
        self.blackhole = False
        if self._server is None:
            await self.start()

    def reset(self) -> int:
        """RST every current connection, both sides; returns how many were reset."""
        links = list(self._links)
        for link in links:
            for writer in link.writers():
                _abort_with_rst(writer)
            for task in link.tasks:
                task.cancel()
        self._links.clear()
        return len(links)

    async def stop(self) -> None:
        await self.refuse()
        self.reset()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.drop and random.random() < self.drop:
            _abort_with_rst(writer)
            return
        link = _Link(client=writer)
        self._links.add(link)
        try:
            await self._run_link(link, reader)
        finally:
            self._links.discard(link)
            for w in link.writers():
                w.close()

    async def _run_link(self, link: _Link, client_reader: asyncio.StreamReader) -> None:
        if self.blackhole:
            await self._swallow(client_reader)
            return
        try:
            up_reader, link.upstream = await asyncio.open_connection(*self.target)
        except OSError:
            _abort_with_rst(link.client)
            return
        link.tasks = [
            asyncio.create_task(self._pump(client_reader, link.upstream)),
            asyncio.create_task(self._pump(up_reader, link.client)),
        ]
        # Each pump passes its EOF on (half-close), so the link ends when both directions have.
        await asyncio.gather(*link.tasks, return_exceptions=True)

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(CHUNK):
                pass

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(self._chunk_size()):
                if self.blackhole:
                    continue
                await self._delay(len(chunk))
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            return

    def _chunk_size(self) -> int:
        # Under a bandwidth limit, read small chunks so the delay is spread evenly.
        if self.bandwidth > 0:
            return max(1, min(CHUNK, int(self.bandwidth / 10)))
        return CHUNK

    async def _delay(self, size: int) -> None:
        pause = self.latency + (size / self.bandwidth if self.bandwidth > 0 else 0.0)
        if pause > 0:
            await asyncio.sleep(pause)


def apply_command(proxy: FaultProxy, line: str) -> str:
    """Apply one control-port command (the synchronous ones) and return the answer line."""
    words = line.split()
    if not words:
        return "error: empty command"
    name, args = words[0], words[1:]
    try:
        if name in ("latency", "bandwidth", "drop") and len(args) == 1:
            setattr(proxy, name, float(args[0]))
        elif name == "blackhole" and len(args) == 1 and args[0] in ("on", "off"):
            proxy.blackhole = args[0] == "on"
        elif name == "reset" and not args:
            return f"ok {proxy.reset()}"
        else:
            return f"error: unknown command {line.strip()!r}"
    except ValueError as e:
        return f"error: {e}"
    return "ok"


async def _control(proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := (await reader.readline()).decode(errors="replace"):
        command = line.strip()
        if command == "refuse":
            await proxy.refuse()
            answer = "ok"
        elif command == "restore":
            await proxy.restore()
            answer = "ok"
        else:
            answer = apply_command(proxy, command)
        writer.write(answer.encode() + b"\n")
        await writer.drain()
    writer.close()


async def send_command(port: int, command: str, *, host: str = "127.0.0.1") -> str:
    """Send one command to a fault proxy process's control port; returns its answer."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(command.encode() + b"\n")
    await writer.drain()
    answer = (await reader.readline()).decode().strip()
    writer.close()
    return answer


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


async def _serve_forever(args: argparse.Namespace) -> None:
    proxy = FaultProxy(args.listen, args.target)
    await proxy.start()
    control = await asyncio.start_server(lambda r, w: _control(proxy, r, w), "127.0.0.1", args.control)
    control_port = control.sockets[0].getsockname()[1]
    print(f"listening {proxy.port} control {control_port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        control.close()
        await proxy.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, default=0, help="port to listen on (0 = any free port)")
    parser.add_argument("--target", type=_host_port, required=True, help="HOST:PORT to forward to")
    parser.add_argument("--control", type=int, default=0, help="control port (0 = any free port)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
