"""The small textual forms settings and policies share: durations (`250ms`, `30s`, `5m`, `1h`, or a
number of seconds) and rates (`50/s`, `3000/m`, `1/5s`).

Pure: text in, a number or None out; the caller decides what range is valid and reports the field.
"""

from __future__ import annotations

import re

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d*(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float | None:
    """`"30s"`, `"5m"`, `"250ms"`, `"1h"`, `"0.5"` or a number -> seconds (0 included); None when
    not a duration or negative."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    found = _DURATION.match(value) if isinstance(value, str) else None
    return float(found.group(1)) * _UNIT_SECONDS[found.group(2)] if found else None


def parse_rate(text: str) -> float | None:
    """`"50/s"`, `"3000/m"`, `"10/100ms"` -> tokens per second; None when not a positive rate."""
    found = _RATE.match(text)
    if not found:
        return None
    count, multiple, unit = found.groups()
    period = float(multiple or 1) * _UNIT_SECONDS[unit]
    if period <= 0 or float(count) <= 0:
        return None
    return float(count) / period
