"""Shared CLI plumbing: options, settings, error translation, progress bars, output."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
import sqlalchemy.exc
from tqdm import tqdm

from facestore.errors import FacestoreError
from facestore.timestamps import iso_utc

F = TypeVar("F", bound=Callable[..., Any])


class FacestoreClickError(click.ClickException):
    """A library error as click shows it: the message, no traceback, exit 1."""


class FacestoreSetupError(FacestoreClickError):
    """A setup error (bad settings, wrong database): retrying cannot help, exit 2."""

    exit_code = 2


def click_error(error: FacestoreError) -> FacestoreClickError:
    # exit_code is a class attribute in click's stubs: one class per code, not an assignment
    cls = FacestoreSetupError if error.exit_code == 2 else FacestoreClickError
    return cls(str(error))


class FacestoreGroup(click.Group):
    """Turns library errors into clean messages (no traceback) for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FacestoreError as exc:
            raise click_error(exc) from exc
        except sqlalchemy.exc.OperationalError as exc:
            raise click.ClickException(
                f"The database reported an error: {exc.orig}. Check that --db is the right "
                "database, that it is not on a full or read-only disk, and that facestore's "
                "schema is current ('facestore db current')."
            ) from exc


VERBOSE_HELP = "-v for progress logs, -vv for debug logs."
LOG_FORMAT_HELP = "Log line format on stderr; json suits log collectors. [default: text]"


def apply_logging(ctx: click.Context, verbose: int = 0, log_format: str | None = None) -> None:
    """Configure logging from the global options and those given after the command."""
    root = ctx.find_root()
    verbosity = max(verbose, root.params.get("verbose") or 0)
    if root.invoked_subcommand == "watch" or ctx.info_name == "watch":
        verbosity = max(verbosity, 1)  # the daemon logs its lifecycle at INFO by default
    configure_logging(verbosity, log_format or root.params.get("log_format") or "text")


class FacestoreCommand(click.Command):
    """A command that also takes the global -v and --log-format after its name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params += [
            click.Option(["-v", "--verbose", "cmd_verbose"], count=True, help=VERBOSE_HELP),
            click.Option(
                ["--log-format", "cmd_log_format"],
                type=click.Choice(["text", "json"]),
                default=None,
                help=LOG_FORMAT_HELP,
            ),
        ]

    def invoke(self, ctx: click.Context) -> Any:
        verbose = ctx.params.pop("cmd_verbose", 0)
        log_format = ctx.params.pop("cmd_log_format", None)
        if verbose or log_format:
            apply_logging(ctx, verbose, log_format)
        return super().invoke(ctx)


class CommandGroup(click.Group):
    """A command group whose commands take -v and --log-format too."""

    command_class = FacestoreCommand


def configure_logging(verbosity: int, log_format: str = "text") -> None:
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("facestore").setLevel(level)


class TextFormatter(logging.Formatter):
    """Log times as ISO 8601 UTC, the one format of every timestamp facestore prints."""

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


@contextmanager
def progress_bar(total: int, desc: str, unit: str = "face") -> Iterator[Callable[[int], None]]:
    """A tqdm bar on a TTY (with ETA), silent otherwise."""
    with tqdm(total=total, desc=desc, unit=unit, disable=None, file=sys.stderr) as bar:

        def advance(n: int) -> None:
            bar.update(n)

        yield advance


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))
