"""YAML documents with the line of every field, so that a problem found while validating plain data
still names its line: `file:line: field.path: message`, for settings and policy files alike.

Documents are composed within guard.config.yamlbounds' limits (size, alias expansion) before they
are walked. Never raises on bad input: problems are returned, all at once.
"""

from __future__ import annotations

import yaml

from guard.config import yamlbounds
from guard.config.paths import FieldPath, Lines, dotted, undotted

Document = tuple[object, Lines]
"""A document's plain data and the line of each of its fields."""


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


def read(text: str, source: str, *,
         max_bytes: int = yamlbounds.MAX_BYTES) -> tuple[list[Document], list[str]]:
    """Every YAML document of `text` (empty ones skipped) with its lines, and problems: the text
    refused by the bounds, invalid YAML, duplicate keys."""
    try:
        nodes = yamlbounds.compose(text, max_bytes=max_bytes)
    except yamlbounds.YamlRefused as e:
        return [], [f"{source}: refused: {e}"]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        return [], [f"{source}{line}: invalid YAML: {problem}"]
    documents: list[Document] = []
    problems: list[str] = []
    for node in nodes:
        reader = _Reader()
        try:
            documents.append((reader.value(node, ()), reader.lines))
        except yaml.YAMLError as e:
            return [], [f"{source}: invalid YAML: {e}"]
        problems += [f"{source}:{line}: {dotted(path)}: duplicate key" for path, line in reader.duplicates]
    return documents, problems


def line_of(lines: Lines, path: FieldPath) -> int | None:
    """The line of `path`, or of its nearest known enclosing field."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def locate(source: str, lines: Lines, path: FieldPath, message: str) -> str:
    """`file:line: field.path: message`."""
    line = line_of(lines, path)
    where = f"{source}:{line}" if line is not None else source
    return f"{where}: {dotted(path)}: {message}" if path else f"{where}: {message}"


def with_line(problem: str, source: str, lines: Lines) -> str:
    """`file: field.path: message` as `file:line: field.path: message`, when the field has a line."""
    head = f"{source}: "
    if not problem.startswith(head):
        return problem
    at, sep, message = problem[len(head):].partition(": ")
    line = line_of(lines, undotted(at)) if sep else None
    return f"{source}:{line}: {at}: {message}" if line is not None else problem
