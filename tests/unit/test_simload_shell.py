"""The simulated container's shell runs echo, cat, env and sh -c with real exit codes."""

from collections.abc import AsyncIterator

import pytest

from chaos.sim import shell


async def run(argv: list[str], stdin: list[bytes] | None = None) -> tuple[int, bytes, bytes]:
    out: list[bytes] = []
    err: list[bytes] = []

    async def to_out(data: bytes) -> None:
        out.append(data)

    async def to_err(data: bytes) -> None:
        err.append(data)

    async def feed() -> AsyncIterator[bytes]:
        for chunk in stdin or []:
            yield chunk

    streams = shell.Streams(to_out, to_err, feed() if stdin is not None else None)
    code = await shell.run(argv, shell.Container("web-1", {"FOO": "bar"}), streams)
    return code, b"".join(out), b"".join(err)


@pytest.mark.parametrize(
    ("argv", "code", "stdout", "stderr"),
    [
        (["echo", "hi", "there"], 0, b"hi there\n", b""),
        (["echo", "-n", "hi"], 0, b"hi", b""),
        (["/bin/echo", "hi"], 0, b"hi\n", b""),
        (["hostname"], 0, b"web-1\n", b""),
        (["env"], 0, b"FOO=bar\n", b""),
        (["printenv", "FOO"], 0, b"bar\n", b""),
        (["false"], 1, b"", b""),
        (["nosuch"], 127, b"", b'exec: "nosuch": executable file not found in $PATH\n'),
        (["sh", "-c", "echo a; echo b"], 0, b"a\nb\n", b""),
        (["sh", "-c", "false && echo no || echo yes"], 0, b"yes\n", b""),
        (["sh", "-c", "echo out; echo err >&2; exit 3; echo never"], 3, b"out\n", b"err\n"),
        (["bash", "-c", "exit 300"], 44, b"", b""),
    ],
)
async def test_commands(argv: list[str], code: int, stdout: bytes, stderr: bytes) -> None:
    """Each command prints what the real one would and exits with the same code."""
    assert await run(argv) == (code, stdout, stderr)


async def test_cat_echoes_stdin_until_it_closes() -> None:
    """cat copies every stdin chunk to stdout and ends when stdin ends."""
    assert await run(["cat"], [b"one\n", b"two\n"]) == (0, b"one\ntwo\n", b"")


async def test_cat_without_stdin_prints_nothing() -> None:
    """Without an attached stdin, cat sees end of input at once."""
    assert await run(["cat"]) == (0, b"", b"")
