"""`python -m chaos`: the test bed's subcommands (sim, run, demo).

A subcommand module either exposes `add_arguments(parser)` and a synchronous `run(args) -> int`, or a
`main(argv) -> int` that parses its own arguments. Bad input is one clear line and a non-zero exit,
never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Sequence
from types import ModuleType

COMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("chaos.sim.cli", "run the simulated kube-apiserver"),
    "run": ("chaos.runner", "run a flood scenario with and without guard and write a report"),
    "demo": ("chaos.demo", "the main job shown in the README"),
}


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if not name.startswith(str(e.name)):
            raise
        return None  # not built yet


def _parses_itself(module: ModuleType) -> bool:
    run = getattr(module, "run", None)
    return not (hasattr(module, "add_arguments") and run is not None and not inspect.iscoroutinefunction(run))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = _module(module_name)
        if module is None or (_parses_itself(module) and not hasattr(module, "main")):
            continue
        command = sub.add_parser(name, help=help_text, description=help_text)
        if not _parses_itself(module):
            module.add_arguments(command)
            command.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        module = _module(COMMANDS[argv[0]][0])
        if module is not None and _parses_itself(module) and hasattr(module, "main"):
            return int(module.main(argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
