"""Every command, subcommand, argument and option of `guard` and `python -m chaos` says what it is
in `--help`: a newcomer reads the tool from its help alone."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from chaos.__main__ import COMMANDS as CHAOS_COMMANDS
from guard.cli import build_parser


def _parsers(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from _parsers(child, f"{name} {sub}")


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            missing += [f"{choice.dest}" for choice in action._choices_actions if not choice.help]
            continue
        if not action.help:
            missing.append("/".join(action.option_strings) or action.dest)
    return missing


@pytest.mark.parametrize("parser", [build_parser(), build_parser("python -m chaos", "chaos", CHAOS_COMMANDS)],
                         ids=["guard", "chaos"])
def test_every_argument_has_help(parser: argparse.ArgumentParser) -> None:
    missing = {name: found for name, p in _parsers(parser, parser.prog) if (found := _undocumented(p))}
    assert not missing, missing
