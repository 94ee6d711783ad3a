"""YAML with bounds: a document's size and how many nodes it expands to through aliases.

A few hundred bytes of nested anchors and aliases (a "billion laughs") expand to billions of nodes
when a reader walks them; guard walks every settings file, policy file and signed bundle it loads,
so each is composed first (which shares aliased nodes and stays linear in the text), its expanded
size is counted without expanding it (each node's size computed once), and a document past the
bounds is refused with a problem the caller names the file in. Never raises but YamlRefused.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 1 << 20
"""Largest YAML document read (1 MiB): a settings file or one policy file is a few KiB."""
MAX_NODES = 100_000
"""Most nodes a document may expand to, aliases counted each time they are used."""
LOADER = yaml.SafeLoader
"""PyYAML's own (not libyaml's) so that syntax errors read as they always have."""


class YamlRefused(ValueError):
    """The text is too large or expands to too many nodes; the message says which."""


def compose(text: str, *, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES) -> list[yaml.Node]:
    """The documents of `text` as node trees, after checking both bounds. yaml.YAMLError on syntax."""
    size = len(text.encode("utf-8", "surrogateescape"))
    if size > max_bytes:
        raise YamlRefused(f"{size} bytes is more than the {max_bytes} a file may hold")
    nodes = [n for n in yaml.compose_all(text, Loader=LOADER) if n is not None]
    total = 0
    sizes: dict[int, int] = {}
    for node in nodes:
        total += expanded_size(node, sizes, max_nodes)
        if total > max_nodes:
            break
    if total > max_nodes:
        raise YamlRefused(f"expands to more than {max_nodes} nodes through its aliases")
    return nodes


def expanded_size(root: yaml.Node, sizes: dict[int, int], limit: int) -> int:
    """Nodes `root` stands for with every alias expanded, or limit + 1 once past `limit` (or for a
    node that contains itself). `sizes` memoises by node identity across calls."""
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes and not done:
            continue
        children = _children(node)
        if done:
            open_.discard(key)
            sizes[key] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if key in open_:
            return limit + 1  # recursive: infinite when expanded
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
        if any(id(c) in open_ for c in children):
            return limit + 1
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def safe_load(text: str) -> Any:
    """yaml.safe_load of one document within the bounds (YamlRefused, or yaml.YAMLError)."""
    nodes = compose(text)
    if len(nodes) > 1:
        raise YamlRefused("holds more than one YAML document")
    if not nodes:
        return None
    loader = LOADER(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
