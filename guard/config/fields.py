"""Field checkers for guard.yaml: each reads one raw value, records a problem naming file and field
path, and returns a usable value (or a harmless default) so validation can continue and report
every problem at once.

Never raises on bad input and never echoes a secret's value in a message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from guard.config.durations import parse_duration

T = TypeVar("T", bound=str)


class Fields:
    """Collects problems for one file; `at` arguments are field paths like `clusters[0].server`."""

    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.base = base
        self.problems: list[str] = []

    def error(self, at: str, message: str) -> None:
        self.problems.append(f"{self.name}: {at}: {message}" if at else f"{self.name}: {message}")

    def mapping(self, raw: object, at: str, known: Sequence[str], *,
                required: Sequence[str] = ()) -> Mapping[str, object]:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.error(at, "must be a mapping")
            return {}
        prefix = f"{at}." if at else ""
        for key in raw:
            if key not in known:
                self.error(f"{prefix}{key}", f"unknown field{_suggest(str(key), known)}")
        for key in required:
            if raw.get(key) is None:
                self.error(f"{prefix}{key}", "is required")
        return {str(k): v for k, v in raw.items() if k in known}

    def string(self, raw: object, at: str, *, pattern: str | None = None, secret: bool = False) -> str | None:
        if raw is None:
            return None
        if not isinstance(raw, str) or not raw:
            self.error(at, "must be a non-empty string")
            return None
        if pattern and not re.fullmatch(pattern, raw):
            shown = "" if secret else f" ({raw!r})"
            self.error(at, f"must match {pattern}{shown}")
            return None
        return raw

    def choice(self, raw: object, at: str, choices: tuple[T, ...]) -> T:
        for c in choices:
            if raw == c:
                return c
        self.error(at, f"must be one of {', '.join(choices)} (got {raw!r})")
        return choices[0]

    def boolean(self, raw: object, at: str) -> bool:
        if not isinstance(raw, bool):
            self.error(at, "must be true or false")
            return False
        return raw

    def integer(self, raw: object, at: str, *, minimum: int) -> int:
        if not isinstance(raw, int) or isinstance(raw, bool) or raw < minimum:
            self.error(at, f"must be an integer >= {minimum}")
            return minimum
        return raw

    def seconds(self, raw: object, at: str) -> float:
        """A number of seconds, or a duration like `250ms`, `30s`, `5m`, `1h`; more than zero."""
        value = parse_duration(raw)
        if value is None or value <= 0:
            self.error(at, f"must be a number of seconds > 0 or a duration like 30s, 5m (got {raw!r})")
            return 1.0
        return value

    def path(self, raw: object, at: str, *, directory: bool = False, must_exist: bool = True) -> Path | None:
        """A path relative to the settings file's directory; must exist unless told otherwise."""
        if raw is None:
            return None
        if not isinstance(raw, str) or not raw:
            self.error(at, "must be a path")
            return None
        path = Path(raw) if Path(raw).is_absolute() else self.base / raw
        if must_exist and not path.exists():
            self.error(at, f"{raw}: no such file or directory")
        elif must_exist and directory and not path.is_dir():
            self.error(at, f"{raw}: not a directory")
        elif must_exist and not directory and path.is_dir():
            self.error(at, f"{raw}: is a directory, expected a file")
        return path


def _suggest(key: str, known: Sequence[str]) -> str:
    """A hint for the near-miss typos that would otherwise silently disable a setting."""
    lowered = {k.lower(): k for k in known}
    if key.lower() in lowered:
        return f" (did you mean {lowered[key.lower()]}?)"
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""

