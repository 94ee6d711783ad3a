"""Tenant policy files for tests: one tenant, one rule `all` with a quota, written as guard reads them."""

from __future__ import annotations

from pathlib import Path

POLICY = """apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {{name: {name}}}
spec:
  subjects: [{{kind: Group, name: {name}}}]
  rules:
    - name: all
      quota: {{rate: {rate}, burst: {burst}{more}}}
{extra}"""


def write_policy(directory: Path, name: str, rate: str, burst: int, *, scope: str = "",
                 fail_mode: str = "", extra: str = "") -> Path:
    """`directory`/`name`.yaml: tenant `name` (the group of the same name) limited to `rate` and
    `burst`; `extra` is appended to the spec (e.g. a quarantine). Returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    more = (f", scope: {scope}" if scope else "") + (f", failMode: {fail_mode}" if fail_mode else "")
    (directory / f"{name}.yaml").write_text(POLICY.format(name=name, rate=rate, burst=burst, more=more,
                                                          extra=extra))
    return directory
