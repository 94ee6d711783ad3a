"""guard's own log (what operators read on standard error; the access log is apart, JSON lines on
standard output or a file): its level and its format — text for people, or one JSON object per line
for log pipelines (time, level, logger, message, and the exception when there is one).

It must never log a token or a header value; the modules that log see to that, this one only
formats what they say.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                    timespec="milliseconds").replace("+00:00", "Z"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"))


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send guard's log to standard error at `level`, as `fmt` (one of LEVELS and FORMATS)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
