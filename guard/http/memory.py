"""Give the C heap's free memory back to the operating system after a burst of connections ends.

Each connection costs guard tens of KiB in C allocations (llhttp, OpenSSL's buffers for a TLS
handshake, transports). glibc keeps what is freed in its arenas, so a thousand connections that come
and go raise the resident set for good unless something asks glibc to trim it. `trim` does, where
glibc is the C library; elsewhere it does nothing. It must never be called on the request path: the
server's sweep calls it after many connections have ended.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable

_trim: Callable[[int], int] | None = None


def _load() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        function: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim with
        return None
    return function


def trim() -> bool:
    """Collect cyclic garbage (a failed handshake's exception and frames form cycles that would
    otherwise wait for the next full collection), then return the heap's free pages to the operating
    system; False where that last step is not possible."""
    global _trim
    if _trim is None:
        _trim = _load() or (lambda _pad: 0)
    gc.collect()
    return bool(_trim(0))
