"""The tiny shell a simulated container runs for `kubectl exec`: echo, cat, env, hostname, sh -c.

It knows just enough to prove that commands, stdin, stdout, stderr and exit codes travel both
ways: `echo [-n] ARGS`, `cat` (stdin back to stdout until stdin closes), `env`, `printenv NAME`,
`hostname`, `pwd`, `true`, `false`, `exit N`, and `sh -c "..."` of those joined by `;`, `&&`,
`||` (and `>&2`).
It never runs a real process and never touches the file system.
"""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

Write = Callable[[bytes], Awaitable[None]]
_SHELLS = frozenset({"sh", "/bin/sh", "bash", "/bin/bash", "ash", "/bin/ash"})
_OPERATORS = frozenset({";", "&&", "||"})


async def _no_stdin() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


@dataclass(frozen=True)
class Container:
    """What a command can see of its container."""

    hostname: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Streams:
    """Where a command reads and writes; stdin is None when the caller attached none."""

    stdout: Write
    stderr: Write
    stdin: AsyncIterator[bytes] | None = None


async def run(argv: list[str], container: Container, streams: Streams) -> int:
    """Run one command line and return its exit code."""
    if len(argv) >= 3 and argv[0] in _SHELLS and argv[1] == "-c":
        return await run_script(argv[2], container, streams)
    return await _run_one(argv, container, streams)


async def run_script(script: str, container: Container, streams: Streams) -> int:
    """Run `cmd1; cmd2 && cmd3 || cmd4` left to right with the shell's short-circuiting."""
    try:
        lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|>")
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError as e:
        await streams.stderr(f"sh: syntax error: {e}\n".encode())
        return 2
    code, operator, command = 0, ";", []
    for token in [*tokens, ";"]:
        if token not in _OPERATORS:
            command.append(token)
            continue
        if command and _should_run(operator, code):
            code = await _run_one(command, container, streams)
            if command[0] == "exit":
                return code
        command, operator = [], token
    return code


def _should_run(operator: str, last_code: int) -> bool:
    return operator == ";" or (operator == "&&") == (last_code == 0)


async def _run_one(argv: list[str], container: Container, streams: Streams) -> int:
    if not argv:
        return 0
    if len(argv) > 2 and argv[-2:] == [">&", "2"]:  # `cmd >&2`: its stdout goes to stderr
        return await _run_one(argv[:-2], container, Streams(streams.stderr, streams.stderr, streams.stdin))
    builtin = _BUILTINS.get(argv[0].rsplit("/", 1)[-1])
    if builtin is None:
        message = f'exec: "{argv[0]}": executable file not found in $PATH\n'
        await streams.stderr(message.encode())
        return 127
    return await builtin(argv[1:], container, streams)


async def _echo(args: list[str], container: Container, streams: Streams) -> int:
    newline = not (args and args[0] == "-n")
    words = args[1:] if not newline else args
    await streams.stdout((" ".join(words) + ("\n" if newline else "")).encode())
    return 0


async def _cat(args: list[str], container: Container, streams: Streams) -> int:
    if args:
        await streams.stderr(f"cat: {args[0]}: No such file or directory\n".encode())
        return 1
    async for chunk in streams.stdin or _no_stdin():
        await streams.stdout(chunk)
    return 0


async def _env(args: list[str], container: Container, streams: Streams) -> int:
    text = "".join(f"{k}={v}\n" for k, v in container.env.items())
    await streams.stdout(text.encode())
    return 0


async def _printenv(args: list[str], container: Container, streams: Streams) -> int:
    if not args:
        return await _env(args, container, streams)
    if args[0] not in container.env:
        return 1
    await streams.stdout(f"{container.env[args[0]]}\n".encode())
    return 0


async def _hostname(args: list[str], container: Container, streams: Streams) -> int:
    await streams.stdout(f"{container.hostname}\n".encode())
    return 0


async def _pwd(args: list[str], container: Container, streams: Streams) -> int:
    await streams.stdout(b"/\n")
    return 0


async def _true(args: list[str], container: Container, streams: Streams) -> int:
    return 0


async def _false(args: list[str], container: Container, streams: Streams) -> int:
    return 1


async def _exit(args: list[str], container: Container, streams: Streams) -> int:
    try:
        return int(args[0]) % 256 if args else 0
    except ValueError:
        await streams.stderr(f"sh: exit: Illegal number: {args[0]}\n".encode())
        return 2


_BUILTINS: dict[str, Callable[[list[str], Container, Streams], Awaitable[int]]] = {
    "echo": _echo,
    "cat": _cat,
    "env": _env,
    "printenv": _printenv,
    "hostname": _hostname,
    "pwd": _pwd,
    "true": _true,
    "false": _false,
    "exit": _exit,
}
