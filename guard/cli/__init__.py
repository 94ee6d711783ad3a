"""The `guard` command: one subcommand per module, each exposing `add_arguments` and `run`.

Every subcommand prints `--help`, and on bad input exits non-zero with one clear line. The test bed's
`python -m chaos` dispatches the same way, through `build_parser` and `dispatch`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Protocol

from guard import __version__
from guard.cli import certs, fleet, kubeconfig, policy, quarantine, serve

DESCRIPTION = "guard: a rate-limiting, RBAC-aware reverse proxy in front of Kubernetes api-servers."



class Command(Protocol):
    """A subcommand module."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# name -> (module, one-line help).
COMMANDS: dict[str, tuple[Command, str]] = {
    "serve": (serve, "run the proxy"),
    "policy": (policy, "validate, push and show tenant policies"),
    "certs": (certs, "make a CA, a serving certificate and client certificates"),
    "kubeconfig": (kubeconfig, "write a kubeconfig that points at guard"),
    "quarantine": (quarantine, "list or release quarantined clients"),
    "fleet": (fleet, "shed traffic fleet-wide in an emergency, list and lift the orders"),
}


def build_parser(prog: str = "guard", description: str = DESCRIPTION,
                 commands: Mapping[str, tuple[Command, str]] = COMMANDS) -> argparse.ArgumentParser:
    """One subparser per command, filled by its module's `add_arguments`, running its `run`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in commands.items():
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
