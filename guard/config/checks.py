"""Primitive checks of plain data read from YAML: each returns the typed value or reports a
problem (a field path and a message) and returns None.

Pure: no YAML, no file I/O; never raises on bad input.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, cast

from guard.config import durations
from guard.config.paths import FieldPath

Report = Callable[[FieldPath, str], None]


def fields(
    value: object, path: FieldPath, report: Report, *, allowed: set[str], required: tuple[str, ...] = ()
) -> Mapping[str, Any] | None:
    """A mapping with only `allowed` keys and every `required` one, else None after reporting."""
    if not isinstance(value, Mapping):
        report(path, "must be a mapping")
        return None
    for key in value:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            report((*path, str(key)), f'unknown field "{key}"{hint}')
    for key in required:
        if key not in value:
            report((*path, key), "is required")
    return cast(Mapping[str, Any], value)


def text(value: object, path: FieldPath, report: Report) -> str | None:
    if not isinstance(value, str) or not value:
        report(path, "must be a non-empty string")
        return None
    return value


def texts(
    value: object, path: FieldPath, report: Report, *, empty_ok: bool = False
) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        report(path, "must be a list of strings")
        return None
    if not value and not empty_ok:
        report(path, "must not be empty")
        return None
    return tuple(value)


def number(
    value: object, path: FieldPath, report: Report, *, minimum: float, integer: bool = False
) -> float | None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and isinstance(value, float))
    ):
        report(path, "must be an integer" if integer else "must be a number")
        return None
    if value < minimum:
        report(path, f"must be at least {minimum:g}")
        return None
    return float(value)


def flag(value: object, path: FieldPath, report: Report) -> bool:
    if not isinstance(value, bool):
        report(path, "must be true or false")
        return False
    return value


def choice(value: object, path: FieldPath, report: Report, options: tuple[str, ...]) -> str | None:
    if value not in options:
        report(path, f"{show(value)} is not one of {', '.join(options)}")
        return None
    return str(value)


def rate(value: object, path: FieldPath, report: Report) -> float | None:
    parsed = durations.parse_rate(value) if isinstance(value, str) else None
    if parsed is None:
        report(path, _not_a_rate(value))
    return parsed


def _not_a_rate(value: object) -> str:
    """Why `value` is no rate: said plainly for the near misses (0, negative, an empty period)."""
    text = str(value).strip() if isinstance(value, str | int | float) else ""
    count, _, period = text.partition("/")
    if count.strip().startswith("-"):
        return f"{text}: a rate cannot be negative"
    if period and durations.parse_rate(f"1/{period}") is None and period.strip()[:1] == "0":
        return f"{text}: the period must be longer than 0"
    if period and durations.parse_rate(f"1/{period}") is not None and count.strip() in ("0", "0.0"):
        return f"{text} is never a token (to refuse everything a rule covers, give it maxInflight: 0)"
    return f"{show(value)} is not a rate like 20/s, 3000/m"


def show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def duration(value: object, path: FieldPath, report: Report) -> float | None:
    parsed = durations.parse_duration(value)
    if parsed is None:
        report(path, f"{show(value)} is not a duration like 30s, 5m")
    return parsed
