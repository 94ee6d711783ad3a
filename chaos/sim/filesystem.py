"""The in-memory file system of one simulated container: what `kubectl cp`, `tar`, `ls` and `cat` see.

Paths are absolute after `resolve`; directories are a set, files a dict of bytes. A fresh one holds
the usual top-level directories of a Linux image and /etc/hostname. It must never touch the real
file system and never grow past `MAX_BYTES` (a write beyond it fails as a full disk would).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

MAX_BYTES = 64 * 1024 * 1024
_ROOT_DIRS = ("bin", "dev", "etc", "home", "lib", "proc", "root", "run", "sbin", "sys", "tmp", "usr", "var")


class FilesystemError(OSError):
    """A path that does not exist, is of the wrong type, or a full disk."""


@dataclass
class Filesystem:
    files: dict[str, bytes] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=lambda: {"/", *(f"/{d}" for d in _ROOT_DIRS)})

    @classmethod
    def for_container(cls, hostname: str) -> Filesystem:
        fs = cls()
        fs.write("/etc/hostname", f"{hostname}\n".encode())
        return fs

    @staticmethod
    def resolve(path: str, cwd: str = "/") -> str:
        return posixpath.normpath(posixpath.join(cwd, path)) if path else cwd

    def is_dir(self, path: str) -> bool:
        return path in self.dirs

    def is_file(self, path: str) -> bool:
        return path in self.files

    def exists(self, path: str) -> bool:
        return self.is_dir(path) or self.is_file(path)

    def read(self, path: str) -> bytes:
        if self.is_dir(path):
            raise FilesystemError(f"{path}: Is a directory")
        if path not in self.files:
            raise FilesystemError(f"{path}: No such file or directory")
        return self.files[path]

    def write(self, path: str, data: bytes, *, append: bool = False) -> None:
        parent = posixpath.dirname(path)
        if not self.is_dir(parent):
            raise FilesystemError(f"{path}: No such file or directory")
        if self.is_dir(path):
            raise FilesystemError(f"{path}: Is a directory")
        new = (self.files.get(path, b"") if append else b"") + data
        if self.used() - len(self.files.get(path, b"")) + len(new) > MAX_BYTES:
            raise FilesystemError(f"{path}: No space left on device")
        self.files[path] = new

    def mkdir(self, path: str, *, parents: bool = False) -> None:
        if self.is_file(path):
            raise FilesystemError(f"{path}: File exists")
        parent = posixpath.dirname(path)
        if not self.is_dir(parent):
            if not parents:
                raise FilesystemError(f"{path}: No such file or directory")
            self.mkdir(parent, parents=True)
        self.dirs.add(path)

    def remove(self, path: str, *, recursive: bool = False) -> None:
        if self.is_file(path):
            del self.files[path]
            return
        if not self.is_dir(path):
            raise FilesystemError(f"{path}: No such file or directory")
        inside = [p for p in (*self.files, *self.dirs) if p.startswith(path.rstrip("/") + "/")]
        if inside and not recursive:
            raise FilesystemError(f"{path}: Directory not empty")
        for p in inside:
            self.files.pop(p, None)
            self.dirs.discard(p)
        self.dirs.discard(path)

    def listdir(self, path: str) -> list[str]:
        if self.is_file(path):
            return [posixpath.basename(path)]
        if not self.is_dir(path):
            raise FilesystemError(f"{path}: No such file or directory")
        prefix = path.rstrip("/") + "/"
        names = {p[len(prefix) :].split("/")[0] for p in (*self.files, *self.dirs) if p.startswith(prefix)}
        return sorted(n for n in names if n)

    def walk(self, path: str) -> list[str]:
        """Every path at or under `path`, parents first."""
        if self.is_file(path):
            return [path]
        prefix = path.rstrip("/") + "/"
        return sorted(p for p in (*self.files, *self.dirs) if p == path or p.startswith(prefix))

    def used(self) -> int:
        return sum(len(v) for v in self.files.values())
