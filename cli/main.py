"""The `facestore` command. Thin: parse options, build dependencies, call the library, print."""

from __future__ import annotations

from pathlib import Path

import click

from facestore import __version__
from facestore.cli.clusters import clusters
from facestore.cli.common import (
    LOG_FORMAT_HELP,
    VERBOSE_HELP,
    FacestoreGroup,
    apply_logging,
)
from facestore.cli.database import db
from facestore.cli.doctor import doctor
from facestore.cli.embed import embed, failures, import_command, status
from facestore.cli.evaluate import evaluate_command
from facestore.cli.model import model, predict, retrain_command, train
from facestore.cli.options import location_options
from facestore.cli.spaces import prune, reembed_command
from facestore.cli.watch import watch


@click.group(cls=FacestoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@location_options
@click.option("-v", "--verbose", count=True, help=VERBOSE_HELP)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", help=LOG_FORMAT_HELP
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

    Global options (--db, --model-dir, -v, --log-format) may be given before or
    after the command name.

    \b
    Environment (an option given on the command line wins):
      FACESTORE_DB          --db
      FACESTORE_MODEL_DIR   --model-dir
      FACESTORE_BACKBONE    --backbone
      FACESTORE_WEIGHTS     --weights
      FACESTORE_DEVICE      --device
      FACESTORE_BATCH_SIZE  --batch-size
      FACESTORE_PRECISION   --precision
      FACESTORE_WORKER_HOST this worker's host name in leases (watch)
      TORCH_HOME            the torch hub cache searched for weights
    """
    apply_logging(ctx)


main.add_command(db)
main.add_command(embed)
main.add_command(status)
main.add_command(failures)
main.add_command(import_command)
main.add_command(retrain_command)
main.add_command(train)
main.add_command(predict)
main.add_command(evaluate_command)
main.add_command(model)
main.add_command(watch)
main.add_command(reembed_command)
main.add_command(prune)
main.add_command(clusters)
main.add_command(doctor)
