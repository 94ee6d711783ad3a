"""The simulated container's shell grammar (pipes, loops, substitution, redirections) and its files:
what the official client's exec tests and `kubectl cp` rely on."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import AsyncIterator

import pytest

from chaos.sim import shell


async def run(
    argv: list[str], stdin: list[bytes] | None = None, container: shell.Container | None = None
) -> tuple[int, bytes, bytes]:
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
    code = await shell.run(argv, container or shell.Container("box"), streams)
    return code, b"".join(out), b"".join(err)


@pytest.mark.parametrize(
    ("script", "code", "stdout", "stderr"),
    [
        ("for i in $(seq 1 3); do echo n$i; done", 0, b"n1\nn2\nn3\n", b""),
        ("echo a | cat | cat", 0, b"a\n", b""),
        ("echo out; echo err >&2", 0, b"out\n", b"err\n"),
        ("echo two 2 >&2", 0, b"", b"two 2\n"),
        ("ls /nope 2>/dev/null || echo missing", 0, b"missing\n", b""),
        ("X=5; echo $X $?", 0, b"5 0\n", b""),
        ("sleep 0; exit 3; echo never", 3, b"", b""),
        ("false && echo no || echo yes", 0, b"yes\n", b""),
        ("date foo", 1, b"", b"date: invalid date 'foo'\n"),
        ("echo hi > /tmp/f; cat /tmp/f; test -f /tmp/f && echo file", 0, b"hi\nfile\n", b""),
    ],
)
async def test_scripts(script: str, code: int, stdout: bytes, stderr: bytes) -> None:
    """`sh -c` scripts behave as in a busybox container."""
    assert await run(["/bin/sh", "-c", script]) == (code, stdout, stderr)


async def test_gzip_pipeline_is_binary_clean() -> None:
    code, out, _ = await run(["/bin/sh", "-c", 'echo -n "This is a test string" | gzip'])
    assert code == 0 and gzip.decompress(out) == b"This is a test string"


async def test_interactive_shell_runs_stdin_line_by_line() -> None:
    """`sh` with stdin runs each line as it arrives and stops at `exit`."""
    lines = [b"echo test string 1\n", b"echo test string 2 >&2\n", b"exit\n", b"echo never\n"]
    assert await run(["/bin/sh"], lines) == (0, b"test string 1\n", b"test string 2\n")


async def test_tar_round_trip_is_what_kubectl_cp_needs() -> None:
    """`tar xmf - -C dir` unpacks kubectl's upload; `tar cf - path` packs it back."""
    box = shell.Container("box")
    upload = io.BytesIO()
    with tarfile.open(fileobj=upload, mode="w") as archive:
        info = tarfile.TarInfo("sub/f.txt")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"hello"))
    assert (await run(["tar", "-xmf", "-", "-C", "/tmp"], [upload.getvalue()], box))[0] == 0
    assert await run(["test", "-d", "/tmp/sub"], None, box) == (0, b"", b"")
    code, packed, _ = await run(["tar", "cf", "-", "/tmp/sub"], None, box)
    with tarfile.open(fileobj=io.BytesIO(packed)) as archive:
        names = archive.getnames()
        member = archive.extractfile("tmp/sub/f.txt")
        assert code == 0 and names == ["tmp/sub", "tmp/sub/f.txt"] and member and member.read() == b"hello"


async def test_dd_writes_a_file_of_the_asked_size() -> None:
    box = shell.Container("box")
    await run(["dd", "if=/dev/zero", "of=/srv/x.dat", "bs=1K", "count=3"], None, box)
    assert len(box.fs.read("/srv/x.dat")) == 3072
