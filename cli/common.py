"""Shared CLI plumbing: options, settings, error translation, progress bars, output."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import sqlalchemy.exc
from tqdm import tqdm

from facestore.config import (
    DEFAULT_MODEL_DIR,
    BackboneSettings,
    Settings,
    resolve_backbone,
    resolve_db,
)
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


def location_options(func: F) -> F:
    """--db and --model-dir, accepted before or after the command name."""
    func = model_dir_option(func)
    func = click.option(
        "--db",
        default=None,
        envvar="FACESTORE_DB",
        show_envvar=True,
        help="The app's database: a SQLite file path or a SQLAlchemy URL.",
    )(func)
    return func


def model_dir_option(func: F) -> F:
    return click.option(
        "--model-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        envvar="FACESTORE_MODEL_DIR",
        show_envvar=True,
        help="Where published models live. [default: ./model]",
    )(func)


def backbone_options(func: F) -> F:
    for decorator in reversed(
        [
            click.option(
                "--backbone",
                default=None,
                envvar="FACESTORE_BACKBONE",
                show_envvar=True,
                help="Backbone name: vggface2 (default), casia-webface, dlib, or a plugin.",
            ),
            click.option(
                "--weights",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                envvar="FACESTORE_WEIGHTS",
                show_envvar=True,
                help="Backbone weights file (e.g. 20180402-114759-vggface2.pt). If not given: "
                "the torch hub cache ($TORCH_HOME), then a download.",
            ),
            click.option(
                "--device",
                default=None,
                envvar="FACESTORE_DEVICE",
                show_envvar=True,
                help="auto (CUDA if available), cpu, cuda or cuda:N. [default: auto]",
            ),
            click.option(
                "--batch-size",
                type=click.IntRange(min=1),
                default=None,
                envvar="FACESTORE_BATCH_SIZE",
                show_envvar=True,
                help="Faces per model batch. [default: 32]",
            ),
        ]
    ):
        func = decorator(func)
    return func


def model_dir_of(ctx: click.Context, model_dir: Path | None) -> Path:
    """--model-dir after the command, else before it, else FACESTORE_MODEL_DIR, else ./model."""
    given = model_dir or ctx.find_root().params.get("model_dir")
    return Path(given or os.environ.get("FACESTORE_MODEL_DIR") or DEFAULT_MODEL_DIR)


def db_url_of(ctx: click.Context, db: str | None) -> str:
    """--db after the command, else before it, else FACESTORE_DB."""
    return resolve_db(db or ctx.find_root().params.get("db"))


def settings(ctx: click.Context, db: str | None, model_dir: Path | None) -> Settings:
    return Settings(db_url=db_url_of(ctx, db), model_dir=model_dir_of(ctx, model_dir))


def backbone_settings(
    backbone: str | None, weights: Path | None, device: str | None, batch_size: int | None
) -> BackboneSettings:
    return resolve_backbone(backbone, str(weights) if weights else None, device, batch_size)


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


def pass_settings(func: F) -> F:
    """Decorator: turn --db/--model-dir into a Settings object passed as `settings`."""

    @location_options
    @click.pass_context
    @functools.wraps(func)
    def wrapper(ctx: click.Context, db: str | None, model_dir: Path | None, **kwargs: Any) -> Any:
        return ctx.invoke(func, settings(ctx, db, model_dir), **kwargs)

    return wrapper  # type: ignore[return-value]


def pass_model_dir(func: F) -> F:
    """Decorator: resolve --model-dir (no database needed) and pass it as `model_dir`."""

    @model_dir_option
    @click.pass_context
    @functools.wraps(func)
    def wrapper(ctx: click.Context, model_dir: Path | None, **kwargs: Any) -> Any:
        return ctx.invoke(func, model_dir_of(ctx, model_dir), **kwargs)

    return wrapper  # type: ignore[return-value]


CLASSIFIER_HELP = (
    "Who a face is; whether it is anyone known is the model's open-set rule. "
    "auto: lda (chosen on real faces, docs/accuracy.md); svc: StandardScaler + linear SVC "
    "(the seed's); lda: shrinkage linear discriminant analysis; logreg: logistic "
    "regression; knn: cosine 5-nearest neighbours; centroid: cosine nearest centroid."
)


def classifier_option(func: F) -> F:
    """--classifier, the same choices and default everywhere a model is trained."""
    from facestore.training import CLASSIFIERS

    return click.option(
        "--classifier",
        type=click.Choice(sorted(CLASSIFIERS)),
        default="auto",
        show_default=True,
        help=CLASSIFIER_HELP,
    )(func)


def min_confidence_option(func: F) -> F:
    """--min-confidence, one meaning and default for predict and the daemon's suggestions."""
    return click.option(
        "--min-confidence",
        type=click.FloatRange(0, 1),
        default=None,
        help="Override the model's calibrated 'unknown' rule: name a face only when its "
        "confidence (the estimated chance the name is right) is at least this. "
        "[default: the model's rule, calibrated at retrain; see 'facestore evaluate']",
    )(func)


def far_option(func: F) -> F:
    """--false-accept, the target the open-set rule is calibrated to at retrain."""
    from facestore.openset import DEFAULT_FAR

    return click.option(
        "--false-accept",
        "far",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=DEFAULT_FAR,
        show_default=True,
        help="Target share of strangers (faces of people not in the model) that the "
        "retrained model may still name; the 'unknown' threshold is calibrated to it. "
        "Lower: fewer strangers named, more known faces left unknown.",
    )(func)
