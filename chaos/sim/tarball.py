"""`tar` in a simulated container: `tar cf - PATH...` packs files of the container's in-memory file
system, `tar xf - [-C DIR]` unpacks an archive from stdin into it — the two commands `kubectl cp`
runs. Flags may be bundled (-xmf, cvf). It must never touch the real file system.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import time

from chaos.sim.shell import Context

_ROOT = "/"


async def _read_all(context: Context) -> bytes:
    return b"".join([chunk async for chunk in context.streams.input()])


async def tar(args: list[str], context: Context) -> int:
    """`tar cf - PATH...` and `tar xf - [-C DIR]` (flags may be bundled: -xmf, cvf, ...)."""
    flags, operands, directory = "", [], _ROOT
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-C":
            directory, i = args[i + 1], i + 2
            continue
        if arg != "-" and (arg.startswith("-") or (i == 0 and not flags)):
            flags += arg.lstrip("-")
        else:
            operands.append(arg)
        i += 1
    if "f" in flags and operands and operands[0] == "-":
        operands = operands[1:]
    fs = context.container.fs
    base = fs.resolve(directory)
    if "x" in flags:
        return await _untar(await _read_all(context), base, context)
    if "c" in flags:
        return await _tar(operands, base, context)
    await context.streams.stderr(b"tar: need exactly one of -c or -x\n")
    return 2


async def _tar(paths: list[str], base: str, context: Context) -> int:
    fs, buffer = context.container.fs, io.BytesIO()
    if any(p.startswith("/") for p in paths):
        await context.streams.stderr(b"tar: removing leading '/' from member names\n")
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for operand in paths:
            for path in fs.walk(fs.resolve(operand, base)):
                name = path.lstrip("/") if operand.startswith("/") else posixpath.relpath(path, base)
                info = tarfile.TarInfo(name)
                info.mtime = int(time.time())
                if fs.is_dir(path):
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    archive.addfile(info)
                else:
                    data = fs.read(path)
                    info.size, info.mode = len(data), 0o644
                    archive.addfile(info, io.BytesIO(data))
    await context.streams.stdout(buffer.getvalue())
    return 0


async def _untar(data: bytes, base: str, context: Context) -> int:
    fs = context.container.fs
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            for member in archive.getmembers():
                path = fs.resolve(member.name.lstrip("/"), base)
                if member.isdir():
                    fs.mkdir(path, parents=True)
                elif member.isfile():
                    fs.mkdir(posixpath.dirname(path), parents=True)
                    extracted = archive.extractfile(member)
                    fs.write(path, extracted.read() if extracted else b"")
    except tarfile.TarError as e:
        await context.streams.stderr(f"tar: {e}\n".encode())
        return 2
    return 0


