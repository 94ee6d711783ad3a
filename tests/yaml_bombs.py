"""A YAML alias bomb ("billion laughs") and a minimal policy to hide it in, for the tests of guard's
YAML bounds. Import: `from tests.yaml_bombs import POLICY_HEAD, bomb`."""

from __future__ import annotations

POLICY_HEAD = """apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {name: t}
spec:
  subjects: [{kind: Group, name: g}]
  rules: [{name: r}]
"""


def bomb(levels: int = 9, width: int = 9) -> str:
    """Nested anchors: the last one stands for width ** levels scalars."""
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"
