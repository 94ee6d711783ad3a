"""The small POSIX-ish shell a simulated container runs for `kubectl exec`, `kubectl cp` and the
official client's stream tests.

It parses `a; b && c || d`, pipelines `a | b`, `for x in ...; do ...; done`, redirections
(`> f`, `>> f`, `< f`, `>&2`, `2>&1`, `2>/dev/null`), `$(command)`, `$VAR` and `$?`; a bare `sh`
with stdin reads and runs one line at a time until `exit` or end of input. The commands
themselves live in `chaos.sim.commands`. It never runs a real process and never touches the real
file system: files are the container's `chaos.sim.filesystem`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from chaos.sim.filesystem import Filesystem

Write = Callable[[bytes], Awaitable[None]]
SHELLS = frozenset({"sh", "/bin/sh", "bash", "/bin/bash", "ash", "/bin/ash", "/usr/bin/sh", "/usr/bin/bash"})
_OPERATORS = frozenset({";", "&&", "||"})
_REDIRECTS = frozenset({">", ">>", "<", ">&", "&>"})
_VAR = re.compile(r"\$(\?|[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})")
_FD = re.compile(r"(^|[\s;|&])([12])(?=>)")
MAX_LOOP = 10_000


async def _no_stdin() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


@dataclass
class Container:
    """What a command can see of its container."""

    hostname: str
    env: dict[str, str] = field(default_factory=dict)
    files: Filesystem | None = None

    def __post_init__(self) -> None:
        if self.files is None:
            self.files = Filesystem.for_container(self.hostname)

    @property
    def fs(self) -> Filesystem:
        assert self.files is not None
        return self.files


@dataclass
class Streams:
    """Where a command reads and writes; stdin is None when the caller attached none."""

    stdout: Write
    stderr: Write
    stdin: AsyncIterator[bytes] | None = None

    def input(self) -> AsyncIterator[bytes]:
        return self.stdin if self.stdin is not None else _no_stdin()


@dataclass
class Context:
    """One running shell: its container, streams, variables and the last exit code."""

    container: Container
    streams: Streams
    variables: dict[str, str] = field(default_factory=dict)
    status: int = 0

    def lookup(self, name: str) -> str:
        name = name.strip("{}")
        if name == "?":
            return str(self.status)
        return self.variables.get(name, self.container.env.get(name, ""))

    def with_streams(self, streams: Streams) -> Context:
        return Context(self.container, streams, self.variables, self.status)


class Exit(Exception):
    """`exit N`: ends the whole shell."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


async def run(argv: list[str], container: Container, streams: Streams) -> int:
    """Run one command line (an exec's argv) and return its exit code."""
    context = Context(container, streams)
    if argv and argv[0] in SHELLS:
        if len(argv) >= 3 and argv[1] == "-c":
            return await run_script(argv[2], context)
        if len(argv) == 1:
            return await interactive(context)
    from chaos.sim import commands  # the commands call back into this module for sh -c

    try:
        return await commands.run(argv, context)
    except Exit as e:
        return e.code


async def run_script(script: str, context: Context) -> int:
    try:
        tokens = await _tokens(script, context)
        return await _run_list(_parse_list(tokens, set()), context)
    except Exit as e:
        return e.code
    except (ValueError, IndexError) as e:
        await context.streams.stderr(f"sh: syntax error: {e}\n".encode())
        return 2


async def interactive(context: Context) -> int:
    """`sh` reading its script from stdin, one line at a time."""
    buffer = b""
    async for chunk in context.streams.input():
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                parsed = _parse_list(await _tokens(line.decode(), context), set())
                context.status = await _run_list(parsed, context)
            except Exit as e:
                return e.code
            except (ValueError, IndexError) as e:
                await context.streams.stderr(f"sh: syntax error: {e}\n".encode())
    return context.status


# -- parsing ------------------------------------------------------------------------------------
async def _tokens(script: str, context: Context) -> list[str]:
    script = await _substitute(script.replace("\n", " ; "), context)
    script = _FD.sub(r"\1@fd\2@ ", script)  # `2>&1` (fd glued to its operator) stays apart from `x 2 >&2`
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


async def _substitute(script: str, context: Context) -> str:
    """Replace each `$(...)` by its command's output (trailing newlines dropped)."""
    while (start := script.find("$(")) >= 0:
        depth, end = 0, start + 1
        for end in range(start + 1, len(script)):
            depth += {"(": 1, ")": -1}.get(script[end], 0)
            if depth == 0:
                break
        out: list[bytes] = []
        inner = context.with_streams(Streams(_collector(out), context.streams.stderr))
        await run_script(script[start + 2 : end], inner)
        script = script[:start] + b"".join(out).decode(errors="replace").rstrip("\n") + script[end + 1 :]
    return script


Node = tuple[str, Any]
"""("pipeline", [argv...]) or ("for", (name, words, body)); a list is [(connector, node), ...]."""


def _parse_list(tokens: list[str], stop: set[str]) -> list[tuple[str, Node]]:
    items: list[tuple[str, Node]] = []
    connector = ";"
    while tokens and tokens[0] not in stop:
        if tokens[0] in _OPERATORS:
            connector = tokens.pop(0)
            continue
        items.append((connector, _parse_pipeline(tokens, stop)))
        connector = ";"
    return items


def _parse_pipeline(tokens: list[str], stop: set[str]) -> Node:
    if tokens[0] == "for":
        return _parse_for(tokens)
    commands: list[list[str]] = [[]]
    while tokens and tokens[0] not in _OPERATORS and tokens[0] not in stop:
        token = tokens.pop(0)
        if token == "|":
            commands.append([])
        else:
            commands[-1].append(token)
    return ("pipeline", commands)


def _parse_for(tokens: list[str]) -> Node:
    tokens.pop(0)
    name = tokens.pop(0)
    words: list[str] = []
    if tokens and tokens[0] == "in":
        tokens.pop(0)
        while tokens[0] not in (";", "do"):
            words.append(tokens.pop(0))
    while tokens[0] == ";":
        tokens.pop(0)
    if tokens.pop(0) != "do":
        raise ValueError("expected 'do'")
    body = _parse_list(tokens, {"done"})
    if not tokens or tokens.pop(0) != "done":
        raise ValueError("expected 'done'")
    return ("for", (name, words, body))


# -- running ------------------------------------------------------------------------------------
async def _run_list(items: list[tuple[str, Node]], context: Context) -> int:
    for connector, node in items:
        if (connector == "&&" and context.status != 0) or (connector == "||" and context.status == 0):
            continue
        context.status = await _run_node(node, context)
    return context.status


async def _run_node(node: Node, context: Context) -> int:
    if node[0] == "for":
        name, words, body = node[1]
        for word in _expand(words, context)[:MAX_LOOP]:
            context.variables[name] = word
            await _run_list(body, context)
        return context.status
    return await _run_pipeline(node[1], context)


def _expand(words: list[str], context: Context) -> list[str]:
    out: list[str] = []
    for word in words:
        expanded = _VAR.sub(lambda m: context.lookup(m.group(1)), word)
        out.extend(expanded.split() if "$" in word and expanded != word else [expanded])
    return [w for w in out if w != "" or w in words]


async def _run_pipeline(commands: list[list[str]], context: Context) -> int:
    stdin = context.streams.stdin
    code = 0
    for i, words in enumerate(commands):
        last = i == len(commands) - 1
        out: list[bytes] = []
        streams = Streams(context.streams.stdout if last else _collector(out), context.streams.stderr, stdin)
        code = await _run_simple(_expand(words, context), context.with_streams(streams))
        stdin = _chunks([b"".join(out)])
    return code


def _collector(out: list[bytes]) -> Write:
    async def collect(data: bytes) -> None:
        out.append(data)

    return collect


async def _chunks(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        if chunk:
            yield chunk


async def _run_simple(words: list[str], context: Context) -> int:
    from chaos.sim import commands

    argv, streams = await _redirect(words, context)
    if argv and all("=" in w and not w.startswith("=") for w in argv):
        for word in argv:
            name, _, value = word.partition("=")
            context.variables[name] = value
        return 0
    return await commands.run(argv, context.with_streams(streams))


async def _redirect(words: list[str], context: Context) -> tuple[list[str], Streams]:
    """Strip redirections from `words`, returning the argv and the streams they point to."""
    from chaos.sim import commands

    argv: list[str] = []
    streams = Streams(context.streams.stdout, context.streams.stderr, context.streams.stdin)
    i = 0
    while i < len(words):
        word = words[i]
        fd = "1"
        if word in ("@fd1@", "@fd2@") and i + 1 < len(words) and words[i + 1] in _REDIRECTS:
            fd, i = word[3], i + 1
            word = words[i]
        if word not in _REDIRECTS or i + 1 >= len(words):
            argv.append(word)
            i += 1
            continue
        target = words[i + 1]
        i += 2
        streams = commands.redirect(streams, context, fd, word, target)
    return argv, streams
