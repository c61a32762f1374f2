"""How facestore's processes log: one handler on stderr, text or JSON lines, ISO 8601
UTC times. The daemon's children (retrain, full re-cluster) take the parent's
`LogSetup`, so that every line of a `--log-format json` daemon is JSON."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass

from facestore.timestamps import iso_utc

LOG_FORMATS = ("text", "json")
TEXT_LAYOUT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """Log times as ISO 8601 UTC, the one format of every timestamp facestore prints."""

    def __init__(self) -> None:
        super().__init__(TEXT_LAYOUT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return iso_utc(record.created) or ""


class JsonFormatter(TextFormatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


@dataclass(frozen=True)
class LogSetup:
    level: int  # facestore's loggers' level
    format: str = "text"  # one of LOG_FORMATS

    @classmethod
    def current(cls) -> LogSetup:
        """This process's setup, to hand to a child process."""
        json_lines = any(
            isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers
        )
        level = logging.getLogger("facestore").getEffectiveLevel()
        return cls(level, "json" if json_lines else "text")

    def apply(self) -> None:
        """Log to stderr in this format: facestore at `level`, other libraries' warnings,
        and Python's warnings (which would otherwise print plain text)."""
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if self.format == "json" else TextFormatter())
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.WARNING)
        logging.getLogger("facestore").setLevel(self.level)
        logging.captureWarnings(True)


def verbosity_level(verbosity: int) -> int:
    """-v counts as a level: none WARNING, -v INFO, -vv DEBUG."""
    return {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
