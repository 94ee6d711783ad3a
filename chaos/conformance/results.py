"""What one suite did against one target, read from a JUnit XML report or counted by hand, and the
table `python -m chaos conformance` prints.

It must never run anything: the suites produce results, this module reads and shows them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Failure:
    name: str
    reason: str


@dataclass(frozen=True)
class Result:
    suite: str
    target: str
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    failures: tuple[Failure, ...] = field(default_factory=tuple)
    note: str = ""
    """Why the suite did not run (a missing source, an install that failed)."""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.errors and not self.note


def from_junit(suite: str, target: str, report: Path, note: str = "") -> Result:
    """Counts and failures of a pytest --junitxml report; a missing report is one error."""
    if not report.exists():
        return Result(suite, target, errors=1, note=note or "the suite produced no report")
    root = ElementTree.parse(report).getroot()
    passed = failed = errors = skipped = 0
    failures: list[Failure] = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}.{case.get('name', '')}".lstrip(".")
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            passed += 1
        elif outcome.tag == "skipped":
            skipped += 1
        else:
            failed += outcome.tag == "failure"
            errors += outcome.tag == "error"
            failures.append(Failure(name, _reason(outcome.get("message") or outcome.text or "")))
    return Result(suite, target, passed, failed, errors, skipped, tuple(failures), note)


def _reason(text: str) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return line[:160]


def table(results: list[Result]) -> str:
    """suite by target with passed/failed/errors/skipped, then every remaining failure."""
    rows = [("suite", "target", "passed", "failed", "errors", "skipped")]
    rows += [
        (r.suite, r.target, str(r.passed), str(r.failed), str(r.errors), str(r.skipped)) for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for result in results:
        if result.note:
            lines.append(f"{result.suite} / {result.target}: {result.note}")
        for failure in result.failures:
            lines.append(f"{result.suite} / {result.target}: {failure.name}: {failure.reason}")
    return "\n".join(lines)
