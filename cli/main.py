"""The `facestore` command. Thin: parse options, build dependencies, call the library, print."""

from __future__ import annotations

from pathlib import Path

import click

from facestore.cli.common import (
    LOG_FORMAT_HELP,
    VERBOSE_HELP,
    LazyGroup,
    apply_logging,
)
from facestore.cli.options import location_options
from facestore.settings import environment_table
from facestore.version import __version__

# Each command's module is imported only when it runs; the text is what --help lists.
COMMANDS = {
    "clusters": (
        "facestore.cli.clusters:clusters",
        "Clusters of unknown faces, biggest first, with their faces.",
    ),
    "db": (
        "facestore.cli.database:db",
        "Install, inspect or remove facestore's tables and triggers in the app's database.",
    ),
    "doctor": (
        "facestore.cli.doctor:doctor",
        "Check the installation end to end and say what to fix, one line per check.",
    ),
    "embed": (
        "facestore.cli.embed:embed",
        "Embed verified faces that have no vector yet in the active space.",
    ),
    "evaluate": (
        "facestore.cli.evaluate:evaluate_command",
        "Measure recognition on the database's own verified faces (active space).",
    ),
    "failures": (
        "facestore.cli.status:failures",
        "List the faces that could not be embedded in the active space, and why.",
    ),
    "import": (
        "facestore.cli.embed:import_command",
        "Add the crops under DIRECTORY as verified faces: one folder per person.",
    ),
    "model": (
        "facestore.cli.model:model",
        "List published model versions, show one, or roll back to one.",
    ),
    "predict": (
        "facestore.cli.predict:predict",
        "Predict person_id and confidence for crop FILES and/or --face-id faces.",
    ),
    "prune": (
        "facestore.cli.spaces:prune",
        "Delete the vectors and failure rows of every space that is not active.",
    ),
    "reembed": (
        "facestore.cli.spaces:reembed_command",
        "Move the store to a new backbone or new weights, with zero downtime.",
    ),
    "retrain": (
        "facestore.cli.train:retrain_command",
        "Refit the classifier over the cached vectors and publish a new model version.",
    ),
    "serve": (
        "facestore.cli.serve:serve",
        'Answer "who is this?" over HTTP with the current model in --model-dir.',
    ),
    "status": (
        "facestore.cli.status:status",
        "Counts of faces, vectors, pending and failed faces, the active space and the model.",
    ),
    "train": (
        "facestore.cli.train:train",
        "Embed what is pending, then retrain and publish: the whole job in one command.",
    ),
    "watch": (
        "facestore.cli.watch:watch",
        "Run beside the tagging app: keep the cache current, retrain, suggest.",
    ),
}


HELP = """facestore: an incremental face-embedding store beside a photo-tagging app.

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
{table}
  TORCH_HOME              the torch hub cache searched for weights
"""


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=HELP.format(table="\n".join(f"  {line}" for line in environment_table())),
)
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
    apply_logging(ctx)
