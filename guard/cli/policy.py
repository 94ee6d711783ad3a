"""`guard policy validate PATH...` and `guard policy schema [--crd]`, and the bundle commands push,
show and keygen (guard.cli.bundles).

validate prints every problem (file, line, field path) on stderr and exits 1, else one OK line per
file on stdout. Sub-subcommands are argparse subparsers that set `run`. validate never writes a file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from guard.admission.config import AdmissionSettings, parse_admission
from guard.admission.rules import compile_policies
from guard.cli import bundles, placement
from guard.config import yamlbounds
from guard.policy import jsonschema
from guard.policy.loading import load_policies


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")
    validate = sub.add_parser("validate", help="check policy files and print every problem",
                              description="Check TenantPolicy files (or directories of them).")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="a policy file or a directory of them")
    validate.add_argument("--config", metavar="FILE",
                          help="guard.yaml whose admission: section (priority levels) the rules must fit, "
                               "and whose clusters placements are checked against (a warning)")
    validate.set_defaults(run=run_validate)
    described = sub.add_parser("schema", help="print TenantPolicy's JSON Schema (or its CRD with --crd)",
                               description="Print the JSON Schema of a TenantPolicy file, for editors and "
                                           "kubeconform, or with --crd a CustomResourceDefinition (YAML).")
    described.add_argument("--crd", action="store_true", help="a CustomResourceDefinition instead")
    described.set_defaults(run=run_schema)
    bundles.add_policy_commands(sub)


def run(args: argparse.Namespace) -> int:
    """Reached only when no sub-subcommand set its own `run` (argparse requires one)."""
    print("guard policy: choose a subcommand (try --help)", file=sys.stderr)
    return 2


def _admission(config: str | None) -> tuple[AdmissionSettings, list[str]]:
    if config is None:
        return AdmissionSettings(), []
    try:
        doc = yamlbounds.safe_load(Path(config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, yamlbounds.YamlRefused) as e:
        return AdmissionSettings(), [f"{config}: cannot be read: {e.__class__.__name__}"]
    raw = doc.get("admission") if isinstance(doc, dict) else None
    return parse_admission(raw, f"{config}: admission")


def run_schema(args: argparse.Namespace) -> int:
    if args.crd:
        sys.stdout.write(yaml.safe_dump(jsonschema.crd(), sort_keys=False))
    else:
        sys.stdout.write(json.dumps(jsonschema.json_schema(), indent=2) + "\n")
    return 0


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
    if args.config is not None:
        clusters, unread = placement.fleet_clusters(args.config)
        for line in unread or placement.warnings(policies, clusters, args.config):
            print(line, file=sys.stderr)
    for policy in policies:
        print(f"{policy.source}: OK: tenant {policy.name}, {len(policy.subjects)} subject(s), "
              f"{len(policy.rules)} rule(s)")
    if not policies:  # an empty directory is a mistake (a typo in the path, a missing mount), not a pass
        print(f"no TenantPolicy in {', '.join(args.paths)} (files ending .yaml or .yml)", file=sys.stderr)
        return 1
    return 0
