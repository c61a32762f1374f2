"""Shared CLI plumbing: options, settings, error translation, progress bars, output."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from facestore.errors import FacestoreError
from facestore.logs import LOG_FORMATS, LogSetup, verbosity_level

F = TypeVar("F", bound=Callable[..., Any])


class FacestoreClickError(click.ClickException):
    """A library error as click shows it: the message, no traceback, exit 1."""


class FacestoreSetupError(FacestoreClickError):
    """A setup error (bad settings, wrong database): retrying cannot help, exit 2."""

    exit_code = 2


def click_error(error: FacestoreError) -> FacestoreClickError:
    # exit_code is a class attribute in click's stubs: one class per code, not an assignment
    cls = FacestoreSetupError if error.exit_code == 2 else FacestoreClickError
    return cls(error.for_command_line)


class FacestoreGroup(click.Group):
    """Turns library errors into clean messages (no traceback) for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FacestoreError as exc:
            raise click_error(exc) from exc
        except Exception as exc:
            if _is_operational_error(exc):
                raise click.ClickException(
                    f"The database reported an error: {getattr(exc, 'orig', exc)}. Check that "
                    "--db is the right database, that it is not on a full or read-only disk, "
                    "and that facestore's schema is current ('facestore db current')."
                ) from exc
            raise


def _is_operational_error(exc: Exception) -> bool:
    if "sqlalchemy" not in sys.modules:  # not imported: the error cannot be one of its
        return False
    import sqlalchemy.exc

    return isinstance(exc, sqlalchemy.exc.OperationalError)


class LazyGroup(FacestoreGroup):
    """Imports a command's module only when that command runs: `facestore --help` and the
    light commands start without torch, scikit-learn or Alembic. `--help` lists the short
    help from the table (tests/cli/test_cli_errors.py checks it against the commands)."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy  # name -> ("module:attribute", short help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = self.lazy[cmd_name][0].partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in self.lazy:
                # a bare Command gives click's public shortening of the table's text
                short = click.Command(name, help=self.lazy[name][1]).get_short_help_str(limit)
                rows.append((name, short))
            elif (command := self.get_command(ctx, name)) is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


VERBOSE_HELP = "-v for progress logs, -vv for debug logs."
LOG_FORMAT_HELP = "Log line format on stderr; json suits log collectors. [default: text]"


def apply_logging(ctx: click.Context, verbose: int = 0, log_format: str | None = None) -> None:
    """Configure logging from the global options and those given after the command."""
    root = ctx.find_root()
    verbosity = max(verbose, root.params.get("verbose") or 0)
    if {root.invoked_subcommand, ctx.info_name} & {"watch", "serve"}:
        verbosity = max(verbosity, 1)  # the services log their lifecycle at INFO by default
    configure_logging(verbosity, log_format or root.params.get("log_format") or "text")


class FacestoreCommand(click.Command):
    """A command that also takes the global -v and --log-format after its name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params += [
            click.Option(["-v", "--verbose", "cmd_verbose"], count=True, help=VERBOSE_HELP),
            click.Option(
                ["--log-format", "cmd_log_format"],
                type=click.Choice(LOG_FORMATS),
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
    LogSetup(verbosity_level(verbosity), log_format).apply()


@contextmanager
def progress_bar(total: int, desc: str, unit: str = "face") -> Iterator[Callable[[int], None]]:
    """A tqdm bar on a TTY (with ETA), silent otherwise."""
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit=unit, disable=None, file=sys.stderr) as bar:

        def advance(n: int) -> None:
            bar.update(n)

        yield advance


@contextmanager
def stage_bars() -> Iterator[Callable[[str, int, int], None]]:
    """A tqdm bar for each stage of a long pass, one after the other, on a TTY (silent
    otherwise); the callback takes (stage, done, total)."""
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def show(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total, desc=stage, disable=None, file=sys.stderr)
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield show
    finally:
        for bar in bars.values():
            bar.close()


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """'1 face', '2 faces', '1 person', '3 people'."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"
