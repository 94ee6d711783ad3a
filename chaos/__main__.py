"""`python -m chaos`: the test bed's subcommands (sim, run, demo, conformance, fleet).

Each subcommand module exposes `add_arguments(parser)` and a synchronous `run(args) -> int`, as guard's
own subcommands do, and is dispatched by the same code (`guard.cli`). Bad input is one clear line and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from chaos import demo, fleet, runner
from chaos.conformance import cli as conformance
from chaos.sim import cli as sim
from guard.cli import Command, build_parser, dispatch

COMMANDS: dict[str, tuple[Command, str]] = {
    "sim": (sim, "run the simulated kube-apiserver"),
    "run": (runner, "run a flood scenario with and without guard and write a report"),
    "demo": (demo, "the main job shown in the README"),
    "conformance": (conformance, "third-party clients' suites against the simulator and guard"),
    "fleet": (fleet, "many clusters behind guard replicas sharing Redis: what it costs Redis"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser("python -m chaos", __doc__.splitlines()[0], COMMANDS)
    return dispatch(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
