"""`python -m chaos conformance`: third-party clients' own suites against the simulator and through
guard, and a table of what passed.

Each suite runs against a fresh target of each kind (the simulator with --tls; guard in
passthrough with TLS in front of another), so one suite's leftovers never meet another's. Suites:
the official Python client's e2e (sync and asyncio), kubectl 1.32's typed verbs and streams (and
1.27's and 1.33's subset), lightkube's smoke and kr8s's own tests. A suite whose source is
missing is reported as skipped with the reason. Exit 1 when any suite failed. It must never leave
a process behind (targets stop theirs) and never write outside --workdir.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from chaos.conformance import kubectl, lightkube_smoke, pysuites
from chaos.conformance.results import Result, table
from chaos.conformance.targets import KINDS, Target

SUITES = (
    "python-e2e",
    "python-e2e-asyncio",
    "kubectl-1.32",
    "kubectl-1.27",
    "kubectl-1.33",
    "lightkube",
    "kr8s",
)
QUICK = ("python-e2e", "kubectl-1.32")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--suite", action="append", choices=SUITES, help="run only these suites (repeatable; default: all)")
    add("--target", action="append", choices=KINDS, help="run only against these targets (default: both)")
    add("-k", "--only", default="", help="only the tests or checks whose name holds this text")
    add("--quick", action="store_true", help=f"the smoke: {', '.join(QUICK)} only")
    add("--workdir", type=Path, help="where targets keep their logs and reports (default: a temporary dir)")
    add("--json", type=Path, help="also write the results as JSON here")


def run_suite(suite: str, target: Target, only: str) -> Result:
    if suite.startswith("python-e2e"):
        source = pysuites.find_e2e(Path.cwd())
        return pysuites.official(source, target, asyncio=suite.endswith("asyncio"), only=only)
    if suite.startswith("kubectl-"):
        return kubectl.suite(suite.split("-", 1)[1], target, only=only)
    if suite == "lightkube":
        return lightkube_smoke.suite(target)
    return pysuites.kr8s(target, only=only)


def run(args: argparse.Namespace) -> int:
    suites = args.suite or (QUICK if args.quick else SUITES)
    kinds = args.target or KINDS
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="chaos-conformance-"))
    results: list[Result] = []
    for suite in suites:
        for kind in kinds:
            try:
                with Target(kind, workdir / f"{suite}-{kind}") as target:
                    results.append(run_suite(suite, target, args.only))
            except RuntimeError as e:
                results.append(Result(suite, kind, errors=1, note=f"target did not start: {e}"[:300]))
            print(table(results[-1:]).splitlines()[2], flush=True)
    print()
    print(table(results), flush=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.ok or r.note.startswith("skipped") for r in results) else 1
