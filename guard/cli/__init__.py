"""The `guard` command: one subcommand per module, each exposing `add_arguments` and `run`.

Every subcommand prints `--help`, and on bad input exits non-zero with one clear line. The test bed's
`python -m chaos` dispatches the same way, through `build_parser` and `dispatch`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping, Sequence

DESCRIPTION = "guard: a rate-limiting, RBAC-aware reverse proxy in front of Kubernetes api-servers."

# name -> (module, one-line help). The module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("guard.cli.serve", "run the proxy"),
    "policy": ("guard.cli.policy", "validate, push and show tenant policies"),
    "certs": ("guard.cli.certs", "make a CA, a serving certificate and client certificates"),
    "kubeconfig": ("guard.cli.kubeconfig", "write a kubeconfig that points at guard"),
    "quarantine": ("guard.cli.quarantine", "list or release quarantined clients"),
}


def build_parser(prog: str = "guard", description: str = DESCRIPTION,
                 commands: Mapping[str, tuple[str, str]] = COMMANDS) -> argparse.ArgumentParser:
    """One subparser per command, filled by its module's `add_arguments`, running its `run`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in commands.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def dispatch(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
