"""Read TenantPolicy files (a tenant per document; a file may hold several, `---` between them) from
files and directories, reporting every problem as `file:line: field.path: message`.

guard.config.documents remembers the line of every field, so a problem found while validating
plain data (`guard.policy.schema`) still names its line. Never raises on bad input:
problems are returned, all at once, and the caller decides (refuse to start, keep the last good
set on reload).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from guard.config.documents import locate
from guard.config.documents import read as documents_of
from guard.config.paths import FieldPath, Lines
from guard.policy import schema
from guard.policy.model import TenantPolicy

SUFFIXES = (".yaml", ".yml")
MAX_BYTES = 256 * 1024
"""Largest policy file (a tenant's policy is a few KiB); larger ones are refused unread."""


def load_text(text: str, source: str) -> tuple[list[TenantPolicy], list[str]]:
    """The policies of YAML text (one or several documents, `---` between them); `source` names
    it in problems. On any problem, no policy."""
    documents, problems = documents_of(text, source, max_bytes=MAX_BYTES)
    if not documents and not problems:
        problems.append(f"{source}: holds no TenantPolicy")
    policies: list[TenantPolicy] = []
    for data, lines in documents:
        def report(path: FieldPath, message: str, lines: Lines = lines) -> None:
            problems.append(locate(source, lines, path, message))

        policy = schema.tenant(data, report, source=source)
        if policy is not None:
            policies.append(policy)
    return (policies if not problems else []), problems


def policy_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """The policy files named by `paths`: files as given, directories' *.yaml/*.yml sorted by name."""
    files: list[Path] = []
    problems: list[str] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or directory")
    return files, problems


def load_policies(paths: Sequence[str | Path]) -> tuple[list[TenantPolicy], list[str]]:
    """Every policy under `paths` in order, and every problem (including duplicate tenant names)."""
    files, problems = policy_files(paths)
    texts: list[tuple[str, str]] = []
    for path in files:
        try:
            if path.stat().st_size > MAX_BYTES:
                problems.append(f"{path}: refused: larger than the {MAX_BYTES} bytes a policy file may hold")
                continue
            texts.append((str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{path}: cannot be read: {e.__class__.__name__}")
    policies, found = policies_of(texts)
    return policies, problems + found


def policies_of(texts: Iterable[tuple[str, str]]) -> tuple[list[TenantPolicy], list[str]]:
    """The policies of (source, YAML text) pairs in order, and every problem: a tenant defined twice
    is one (the first definition stays)."""
    policies: list[TenantPolicy] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for source, text in texts:
        found_policies, found = load_text(text, source)
        problems.extend(found)
        for policy in found_policies:
            if policy.name in seen:
                problems.append(f'{source}: metadata.name: tenant "{policy.name}" is already defined in '
                                f"{seen[policy.name]}")
                continue
            seen[policy.name] = source
            policies.append(policy)
    return policies, problems
