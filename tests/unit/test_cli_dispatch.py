"""The `guard` command dispatches to one module per subcommand and answers bad input clearly."""

import subprocess
import sys


def run_guard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guard.cli", *args], capture_output=True, text=True)


def test_help_lists_the_built_subcommands() -> None:
    """`guard --help` names every subcommand whose module exists."""
    result = run_guard("--help")
    assert result.returncode == 0
    assert "COMMAND" in result.stdout


def test_unknown_subcommand_is_one_clear_error() -> None:
    """An unknown subcommand exits 2 with argparse's one-line complaint, not a traceback."""
    result = run_guard("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert "Traceback" not in result.stderr
