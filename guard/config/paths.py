"""Field paths of plain data read from YAML: ("spec", "rules", 1, "quota") and its dotted spelling
"spec.rules[1].quota", which every problem guard reports names. Pure: no YAML, no I/O.
"""

from __future__ import annotations

import re

FieldPath = tuple[str | int, ...]
Lines = dict[FieldPath, int]
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def dotted(path: FieldPath) -> str:
    """("spec", "rules", 1, "quota") -> "spec.rules[1].quota"."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def undotted(text: str) -> FieldPath:
    """"clusters[0].health.failures" -> ("clusters", 0, "health", "failures")."""
    return tuple(int(index) if index else name for name, index in _PART.findall(text))
