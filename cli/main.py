"""The `facestore` command. Thin: parse options, build dependencies, call the library, print."""

from __future__ import annotations

from pathlib import Path

import click

from facestore import __version__
from facestore.cli.common import FacestoreGroup, configure_logging, location_options
from facestore.cli.database import db
from facestore.cli.embed import embed, import_command, status
from facestore.cli.evaluate import evaluate_command
from facestore.cli.model import model, predict, retrain_command, train
from facestore.cli.spaces import prune, reembed_command
from facestore.cli.watch import watch


@click.group(cls=FacestoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@location_options
@click.option("-v", "--verbose", count=True, help="-v for progress logs, -vv for debug logs.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log line format on stderr; json suits log collectors.",
)
@click.version_option(__version__, prog_name="facestore")
@click.pass_context
def main(
    ctx: click.Context, db: str | None, model_dir: Path | None, verbose: int, log_format: str
) -> None:
    """facestore: an incremental face-embedding store beside a photo-tagging app.

    It embeds the app's verified faces (table `face`) into its own cache table,
    retrains a classifier over the cached vectors, publishes versioned models in
    model/, and predicts person_id for new faces.

    \b
    Quick start on a SQLite file:
      facestore --db photos.db import people/
      facestore --db photos.db train --upgrade

    --db and --model-dir may be given before or after the command name.
    """
    # The daemon logs its lifecycle at INFO by default.
    daemon = ctx.invoked_subcommand == "watch"
    configure_logging(max(verbose, 1) if daemon else verbose, log_format)


main.add_command(db)
main.add_command(embed)
main.add_command(status)
main.add_command(import_command)
main.add_command(retrain_command)
main.add_command(train)
main.add_command(predict)
main.add_command(evaluate_command)
main.add_command(model)
main.add_command(watch)
main.add_command(reembed_command)
main.add_command(prune)
