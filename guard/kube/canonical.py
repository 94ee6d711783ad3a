"""One canonical form of a request target, read by Go's rules, so that what guard classifies is
exactly what the api-server is sent.

The api-server reads `req.URL.Path` (percent-decoded; `%2F` is a `/`) and `req.URL.Query()` (Go's
`url.ParseQuery`: `&`-separated, `+` is a space, a pair with a bad escape or a `;` is dropped, the
first value of a repeated key wins). Hops in front of it differ on the rest: nginx merges `//` and
resolves `..`, Go's `ServeMux` redirects, the api-server itself does neither. guard therefore:

- merges empty segments (`/api//v1/pods` is `/api/v1/pods`) and forwards the merged form, so the
  api-server and every hop after guard see the path guard classified;
- refuses `.` and `..` segments (after decoding) with 400: resolving them or not, some hop reads
  the request differently (the api-server refuses such names anyway);
- refuses malformed percent-escapes and control characters with 400, as Go's HTTP server does.

Pure: strings in, a `Target` out; never raises anything but `BadRequest`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from guard.kube.errors import BadRequest

_HEX = frozenset(b"0123456789abcdefABCDEF")
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
"""Characters the re-encoded path keeps as they are (RFC 3986 pchar, and `/`)."""


@dataclass(frozen=True)
class Target:
    """A request target in guard's canonical form."""

    path: str
    """The decoded path, empty segments merged (`/` + segments, a trailing `/` kept)."""
    params: Mapping[str, str] = field(default_factory=dict)
    """Each query parameter's first value, as Go's `url.Values.Get` reads it."""
    forward: str = ""
    """The request target to send upstream: the one received unless merging changed the path."""
    changed: bool = False
    """True when `forward` differs from the target received."""


def canonical(raw_target: str) -> Target:
    """The canonical form of `raw_target` (path and query, still encoded, as on the request line).

    Raises BadRequest for a target the api-server's Go stack would not read as guard does."""
    raw_path, mark, raw_query = raw_target.partition("?")
    if _has_control(raw_target):
        raise BadRequest("invalid control character in the request target")
    decoded = _unescape(raw_path, plus_is_space=False)
    if decoded is None:
        raise BadRequest("invalid percent-escape in the request path")
    segments = [s for s in decoded.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise BadRequest('"." and ".." path segments are not accepted')
    path = "/" + "/".join(segments)
    if segments and decoded.endswith("/"):
        path += "/"
    params = first_values(parse_query(raw_query))
    if path == decoded:
        return Target(path, params, raw_target, False)
    encoded = quote(path.encode("utf-8", "surrogateescape"), safe=_PATH_SAFE)
    return Target(path, params, encoded + mark + raw_query, True)


def parse_query(raw: str) -> dict[str, list[str]]:
    """Go's `url.ParseQuery`, without its error: every key's values in order."""
    values: dict[str, list[str]] = {}
    for pair in raw.split("&"):
        if not pair or ";" in pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key = _unescape(raw_key, plus_is_space=True)
        value = _unescape(raw_value, plus_is_space=True)
        if key is None or value is None:
            continue
        values.setdefault(key, []).append(value)
    return values


def first_values(values: Mapping[str, list[str]]) -> dict[str, str]:
    return {key: found[0] for key, found in values.items() if found}


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _unescape(text: str, *, plus_is_space: bool) -> str | None:
    """Go's `url.unescape`: %XX decoded (the result read as UTF-8 bytes), None on a bad escape."""
    if "%" not in text:
        return text.replace("+", " ") if plus_is_space else text
    raw = text.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte == 0x25:  # %
            pair = raw[i + 1:i + 3]
            if len(pair) < 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                return None
            out.append(int(pair, 16))
            i += 3
            continue
        out.append(0x20 if plus_is_space and byte == 0x2B else byte)
        i += 1
    return out.decode("utf-8", "surrogateescape")
