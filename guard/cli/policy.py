"""`guard policy validate PATH...` (and the sub-subcommands other areas add: push, show, keygen).

validate prints every problem (file, line, field path) on stderr and exits 1, else one OK line per
file on stdout. Sub-subcommands are argparse subparsers that set `run`; to add one, define it in
`_add_commands` or in a module's `add_policy_commands(sub)`. Never writes a file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import yaml

from guard.admission.config import AdmissionSettings, parse_admission
from guard.admission.rules import compile_policies
from guard.policy.loading import load_policies

# Modules that contribute `guard policy` sub-subcommands through add_policy_commands(sub).
EXTENSIONS = ("guard.cli.quarantine",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")
    validate = sub.add_parser("validate", help="check policy files and print every problem",
                              description="Check TenantPolicy files (or directories of them).")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="a policy file or a directory of them")
    validate.add_argument("--config", metavar="FILE",
                          help="guard.yaml whose admission: section (priority levels) the rules must fit")
    validate.set_defaults(run=run_validate)
    for name in EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.add_policy_commands(sub)


def run(args: argparse.Namespace) -> int:
    """Reached only when no sub-subcommand set its own `run` (argparse requires one)."""
    print("guard policy: choose a subcommand (try --help)", file=sys.stderr)
    return 2


def _admission(config: str | None) -> tuple[AdmissionSettings, list[str]]:
    if config is None:
        return AdmissionSettings(), []
    try:
        doc = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        return AdmissionSettings(), [f"{config}: cannot be read: {e.__class__.__name__}"]
    raw = doc.get("admission") if isinstance(doc, dict) else None
    return parse_admission(raw, f"{config}: admission")


def run_validate(args: argparse.Namespace) -> int:
    settings, problems = _admission(args.config)
    policies, found = load_policies(args.paths)
    problems += found
    problems += compile_policies(policies, settings)[1]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    for policy in policies:
        print(f"{policy.source}: OK: tenant {policy.name}, {len(policy.subjects)} subject(s), "
              f"{len(policy.rules)} rule(s)")
    if not policies:
        print("no policy files found")
    return 0
