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
{cost}{extra}"""


def write_policy(directory: Path, name: str, rate: str, burst: int, *, scope: str = "",
                 fail_mode: str = "", max_wait: str = "0s", extra: str = "",
                 unmeasured: int | None = 0) -> Path:
    """`directory`/`name`.yaml: tenant `name` (the group of the same name) limited to `rate` and
    `burst`; `extra` is appended to the spec (e.g. a quarantine). Returns the directory.

    `max_wait` is 0 unless asked: the floods that use these policies count what is admitted in
    their own time span, and a request held for its token would be admitted after it. These tests
    are about quotas, so a LIST of a resource guard has not measured yet is priced at `unmeasured`
    objects (0: one token, not guard's conservative default, which would drain a small burst on the
    first LIST); None keeps guard's default."""
    directory.mkdir(parents=True, exist_ok=True)
    more = (f", scope: {scope}" if scope else "") + (f", failMode: {fail_mode}" if fail_mode else "") + (
        f", maxWait: {max_wait}")
    cost = f"      cost: {{list: {{unmeasured: {unmeasured}}}}}\n" if unmeasured is not None else ""
    (directory / f"{name}.yaml").write_text(POLICY.format(name=name, rate=rate, burst=burst, more=more,
                                                          cost=cost, extra=extra))
    return directory
