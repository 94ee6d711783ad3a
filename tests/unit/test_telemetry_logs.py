"""guard's own log: a level and a format an operator chooses (`guard serve --log-level/--log-format`)."""

from __future__ import annotations

import json
import logging

import pytest

from guard.telemetry import logs


def test_json_lines_carry_time_level_logger_and_message(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "json")
    logging.getLogger("guard.example").warning("api-server %s answers again", "https://10.0.0.1")
    logging.getLogger("guard.example").debug("not at info")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert (line["level"], line["logger"], line["message"]) == (
        "warning", "guard.example", "api-server https://10.0.0.1 answers again")
    assert line["time"].endswith("Z")


def test_text_at_debug_writes_debug_lines(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("debug", "text")
    logging.getLogger("guard.example").debug("a detail")
    assert "DEBUG guard.example: a detail" in capsys.readouterr().err


def test_an_exception_stays_inside_its_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("error", "json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("guard.example").exception("unexpected")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "ValueError: boom" in json.loads(line)["exception"]
