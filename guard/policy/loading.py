"""Read TenantPolicy files (one tenant per file) from files and directories, reporting every
problem as `file:line: field.path: message`.

A PyYAML node-tracking reader remembers the line of every field, so a problem found while
validating plain data (`guard.policy.schema`) still names its line. Never raises on bad input:
problems are returned, all at once, and the caller decides (refuse to start, keep the last good
set on reload).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from guard.config import yamlbounds
from guard.policy import schema
from guard.policy.fields import FieldPath, dotted
from guard.policy.model import TenantPolicy

SUFFIXES = (".yaml", ".yml")
MAX_BYTES = 256 * 1024
"""Largest policy file (a tenant's policy is a few KiB); larger ones are refused unread."""
Lines = dict[FieldPath, int]


class _Reader:
    """Plain data from a YAML node tree, with the line of every mapping key and list item."""

    def __init__(self) -> None:
        self.lines: Lines = {}
        self.duplicates: list[tuple[FieldPath, int]] = []
        self._scalars = yaml.constructor.SafeConstructor()

    def value(self, node: yaml.Node, path: FieldPath) -> object:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[object, object] = {}
            for key_node, value_node in node.value:
                key = self._scalars.construct_object(key_node)
                where = (*path, str(key))
                if key in out:
                    self.duplicates.append((where, key_node.start_mark.line + 1))
                self.lines[where] = key_node.start_mark.line + 1
                out[key] = self.value(value_node, where)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalars.construct_object(node)


def read_document(text: str, source: str) -> tuple[object, Lines, list[str]]:
    """The single YAML document of `text`, the line of each field, and problems. A document too
    large, or whose aliases expand too far, is refused before it is walked (guard.config.yamlbounds)."""
    try:
        nodes = yamlbounds.compose(text, max_bytes=MAX_BYTES)
    except yamlbounds.YamlRefused as e:
        return None, {}, [f"{source}: refused: {e}"]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        return None, {}, [f"{source}{line}: invalid YAML: {problem}"]
    nodes = [n for n in nodes if n is not None]
    if len(nodes) != 1:
        found = "no document" if not nodes else f"{len(nodes)} documents"
        return None, {}, [f"{source}: a policy file holds exactly one TenantPolicy; found {found}"]
    reader = _Reader()
    try:
        data = reader.value(nodes[0], ())
    except yaml.YAMLError as e:
        return None, {}, [f"{source}: invalid YAML: {e}"]
    problems = [f"{source}:{line}: {dotted(path)}: duplicate key" for path, line in reader.duplicates]
    return data, reader.lines, problems


def locate(source: str, lines: Lines, path: FieldPath, message: str) -> str:
    """`file:line: field.path: message`, with the line of the nearest known enclosing field."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            where = f"{source}:{lines[path[:end]]}"
            break
    else:
        where = source
    return f"{where}: {dotted(path)}: {message}" if path else f"{where}: {message}"


def load_text(text: str, source: str) -> tuple[TenantPolicy | None, list[str]]:
    """One policy from YAML text; `source` names it in problems."""
    data, lines, problems = read_document(text, source)
    if data is None and problems:
        return None, problems

    def report(path: FieldPath, message: str) -> None:
        problems.append(locate(source, lines, path, message))

    policy = schema.tenant(data, report, source=source)
    return (policy if not problems else None), problems


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
    policies: list[TenantPolicy] = []
    seen: dict[str, str] = {}
    for path in files:
        try:
            if path.stat().st_size > MAX_BYTES:
                problems.append(f"{path}: refused: larger than the {MAX_BYTES} bytes a policy file may hold")
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{path}: cannot be read: {e.__class__.__name__}")
            continue
        policy, found = load_text(text, str(path))
        problems.extend(found)
        if policy is None:
            continue
        if policy.name in seen:
            problems.append(
                f'{path}: metadata.name: tenant "{policy.name}" is already defined in {seen[policy.name]}'
            )
            continue
        seen[policy.name] = str(path)
        policies.append(policy)
    return policies, problems
