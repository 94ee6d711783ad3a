"""The commands of a simulated container: the coreutils a busybox image answers with, plus `tar`
(what `kubectl cp` runs) and `gzip`, on the container's in-memory file system.

Each command reads and writes through the shell's `Context` and returns its exit code; an unknown
command is exit 127 with the runtime's message. It must never run a real process, never touch
the real file system and never sleep longer than `MAX_SLEEP_S`.
"""

from __future__ import annotations

import asyncio
import gzip as gzip_module
import os
import posixpath
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from chaos.sim import shell, tarball
from chaos.sim.filesystem import FilesystemError
from chaos.sim.shell import Context, Streams

Command = Callable[[list[str], Context], Awaitable[int]]
MAX_SLEEP_S = 5.0
_ROOT = "/"


async def run(argv: list[str], context: Context) -> int:
    if not argv:
        return 0
    name = argv[0].rsplit("/", 1)[-1]
    if argv[0] in shell.SHELLS:
        return await shell.run(argv, context.container, context.streams)
    command = COMMANDS.get(name)
    if command is None:
        await context.streams.stderr(f'exec: "{argv[0]}": executable file not found in $PATH\n'.encode())
        return 127
    try:
        return await command(argv[1:], context)
    except FilesystemError as e:
        await context.streams.stderr(f"{name}: {e}\n".encode())
        return 1


def redirect(streams: Streams, context: Context, fd: str, op: str, target: str) -> Streams:
    """The streams after one redirection (`> f`, `>> f`, `< f`, `>&2`, `2>&1`)."""
    out, err, stdin = streams.stdout, streams.stderr, streams.stdin
    if op == ">&" or op == "&>":
        chosen = err if target == "2" else out
        if op == "&>":
            chosen = _file_writer(context, target, append=False)
            return Streams(chosen, chosen, stdin)
        return Streams(chosen, err, stdin) if fd == "1" else Streams(out, chosen, stdin)
    if op == "<":
        path = context.container.fs.resolve(target)
        return Streams(out, err, _once(context.container.fs.read(path)))
    writer = _file_writer(context, target, append=op == ">>")
    return Streams(writer, err, stdin) if fd == "1" else Streams(out, writer, stdin)


def _file_writer(context: Context, target: str, *, append: bool) -> shell.Write:
    fs = context.container.fs
    path = fs.resolve(target)
    if target == "/dev/null":

        async def discard(data: bytes) -> None:
            return None

        return discard
    fs.write(path, b"", append=append)

    async def write(data: bytes) -> None:
        fs.write(path, data, append=True)

    return write


async def _once(data: bytes):  # type: ignore[no-untyped-def]
    if data:
        yield data


async def _read_all(context: Context) -> bytes:
    return b"".join([chunk async for chunk in context.streams.input()])


async def _inputs(args: list[str], context: Context) -> bytes:
    """The files named in args, or stdin when there are none (`-` is stdin too)."""
    files = [a for a in args if not a.startswith("-") or a == "-"]
    if not files:
        return await _read_all(context)
    parts = []
    for name in files:
        fs = context.container.fs
        parts.append(await _read_all(context) if name == "-" else fs.read(fs.resolve(name)))
    return b"".join(parts)


async def _out(context: Context, text: str | bytes) -> int:
    await context.streams.stdout(text.encode() if isinstance(text, str) else text)
    return 0


async def echo(args: list[str], context: Context) -> int:
    newline = not (args and args[0] == "-n")
    return await _out(context, " ".join(args if newline else args[1:]) + ("\n" if newline else ""))


async def cat(args: list[str], context: Context) -> int:
    if not args or args == ["-"]:
        async for chunk in context.streams.input():
            await context.streams.stdout(chunk)
        return 0
    return await _out(context, await _inputs(args, context))


async def env(args: list[str], context: Context) -> int:
    merged = {**context.container.env, **context.variables}
    return await _out(context, "".join(f"{k}={v}\n" for k, v in merged.items()))


async def printenv(args: list[str], context: Context) -> int:
    if not args:
        return await env(args, context)
    value = context.lookup(args[0])
    return await _out(context, f"{value}\n") if value else 1


async def date(args: list[str], context: Context) -> int:
    operands = [a for a in args if not a.startswith(("-", "+"))]
    if operands:
        await context.streams.stderr(f"date: invalid date '{operands[0]}'\n".encode())
        return 1
    return await _out(context, datetime.now(UTC).strftime("%a %b %d %H:%M:%S UTC %Y\n"))


async def dd(args: list[str], context: Context) -> int:
    """`dd if=/dev/zero|/dev/random|FILE of=FILE bs=N[KM] count=N` (the kr8s tests make files so)."""
    options = dict(a.split("=", 1) for a in args if "=" in a)
    size = _bytes(options.get("bs", "512")) * int(options.get("count", "1"))
    source = options.get("if", "-")
    fs = context.container.fs
    if source in ("/dev/random", "/dev/urandom"):
        data = os.urandom(size)
    elif source == "/dev/zero":
        data = bytes(size)
    else:
        data = (await _read_all(context) if source == "-" else fs.read(fs.resolve(source)))[:size]
    target = options.get("of", "-")
    if target == "-":
        await context.streams.stdout(data)
    else:
        fs.mkdir(posixpath.dirname(fs.resolve(target)), parents=True)
        fs.write(fs.resolve(target), data)
    await context.streams.stderr(f"{len(data)} bytes copied\n".encode())
    return 0


def _bytes(text: str) -> int:
    units = {"K": 1024, "M": 1024 * 1024, "G": 1024**3}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1:].upper() in units else int(text)


async def seq(args: list[str], context: Context) -> int:
    numbers = [int(a) for a in args]
    first, step, last = (1, 1, numbers[0]) if len(numbers) == 1 else (numbers[0], 1, numbers[-1])
    if len(numbers) == 3:
        step = numbers[1]
    return await _out(context, "".join(f"{n}\n" for n in range(first, last + (1 if step > 0 else -1), step)))


async def sleep(args: list[str], context: Context) -> int:
    await asyncio.sleep(min(float((args or ["0"])[0].rstrip("s") or 0), MAX_SLEEP_S))
    return 0


async def uptime(args: list[str], context: Context) -> int:
    now = time.strftime("%H:%M:%S", time.gmtime())
    return await _out(context, f" {now} up 1 day,  2:03,  0 users,  load average: 0.10, 0.05, 0.01\n")


async def ls(args: list[str], context: Context) -> int:
    fs = context.container.fs
    paths = [a for a in args if not a.startswith("-")] or ["."]
    names: list[str] = []
    for path in paths:
        names.extend(fs.listdir(fs.resolve(path)))
    return await _out(context, "".join(f"{n}\n" for n in names))


async def gzip(args: list[str], context: Context) -> int:
    data = await _inputs([a for a in args if a != "-c"], context)
    if "-d" in args:
        return await _out(context, gzip_module.decompress(data))
    return await _out(context, gzip_module.compress(data, mtime=0))


async def tail(args: list[str], context: Context) -> int:
    """`tail -c+N` (what kubectl cp's retries run) and `tail -n N`."""
    names = [a for a in args if not a.startswith(("-c", "-n", "+")) and not a.isdigit()]
    data = await _inputs(names, context)
    for i, arg in enumerate(args):
        if arg.startswith("-c"):
            spec = arg[2:] or args[i + 1]
            chosen = data[int(spec[1:]) - 1 :] if spec.startswith("+") else data[-int(spec) :]
            return await _out(context, chosen)
        if arg.startswith("-n"):
            count = int(arg[2:] or args[i + 1])
            return await _out(context, b"".join(data.splitlines(keepends=True)[-count:]))
    return await _out(context, b"".join(data.splitlines(keepends=True)[-10:]))


async def head(args: list[str], context: Context) -> int:
    count = int(args[args.index("-n") + 1]) if "-n" in args else 10
    data = await _inputs([a for a in args if a != "-n" and not a.isdigit()], context)
    return await _out(context, b"".join(data.splitlines(keepends=True)[:count]))


async def test(args: list[str], context: Context) -> int:
    fs = context.container.fs
    args = [a for a in args if a != "]"]
    checks = {"-d": fs.is_dir, "-f": fs.is_file, "-e": fs.exists}
    if len(args) == 2 and args[0] in checks:
        return 0 if checks[args[0]](fs.resolve(args[1])) else 1
    if len(args) == 3 and args[1] in ("=", "!="):
        return 0 if (args[0] == args[2]) == (args[1] == "=") else 1
    return 0 if args and args[0] else 1


async def mkdir(args: list[str], context: Context) -> int:
    fs = context.container.fs
    for path in (a for a in args if not a.startswith("-")):
        fs.mkdir(fs.resolve(path), parents="-p" in args)
    return 0


async def rm(args: list[str], context: Context) -> int:
    fs = context.container.fs
    recursive = any(a.startswith("-") and ("r" in a or "R" in a) for a in args)
    for path in (a for a in args if not a.startswith("-")):
        if fs.exists(fs.resolve(path)) or "-f" not in " ".join(args):
            fs.remove(fs.resolve(path), recursive=recursive)
    return 0


async def touch(args: list[str], context: Context) -> int:
    fs = context.container.fs
    for path in (a for a in args if not a.startswith("-")):
        if not fs.exists(fs.resolve(path)):
            fs.write(fs.resolve(path), b"")
    return 0


async def true(args: list[str], context: Context) -> int:
    return 0


async def false(args: list[str], context: Context) -> int:
    return 1


async def exit_(args: list[str], context: Context) -> int:
    try:
        code = int(args[0]) % 256 if args else context.status
    except ValueError:
        await context.streams.stderr(f"sh: exit: Illegal number: {args[0]}\n".encode())
        code = 2
    raise shell.Exit(code)


async def hostname(args: list[str], context: Context) -> int:
    return await _out(context, f"{context.container.hostname}\n")


async def pwd(args: list[str], context: Context) -> int:
    return await _out(context, "/\n")


async def whoami(args: list[str], context: Context) -> int:
    return await _out(context, "root\n")


async def uname(args: list[str], context: Context) -> int:
    return await _out(context, "Linux\n" if "-a" not in args else "Linux sim 6.1.0 #1 SMP x86_64 GNU/Linux\n")


COMMANDS: dict[str, Command] = {
    "echo": echo, "cat": cat, "env": env, "printenv": printenv, "hostname": hostname, "pwd": pwd,
    "true": true, "false": false, "exit": exit_, "date": date, "seq": seq, "sleep": sleep, "uptime": uptime,
    "ls": ls, "gzip": gzip, "tail": tail, "head": head, "test": test, "[": test, "mkdir": mkdir, "rm": rm,
    "touch": touch, "whoami": whoami, "uname": uname, "tar": tarball.tar, "dd": dd,
}  # fmt: skip
