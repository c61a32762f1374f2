"""`facestore embed` and `facestore import`."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from facestore.cli.app import App, pass_app
from facestore.cli.common import FacestoreCommand, counted, print_json, progress_bar

if TYPE_CHECKING:  # the library is imported where used: --help starts fast
    from sqlalchemy.engine import Engine

SHOW_SKIPPED = 20


@click.command(cls=FacestoreCommand)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_app(backbone=True)
def embed(app: App, as_json: bool) -> None:
    """Embed verified faces that have no vector yet in the active space.

    Incremental and resumable: faces already embedded, or whose current crop
    already failed to decode, are not touched. A crop edited by the app is
    embedded again. JSON keys: embedded, failed, pending, seconds.

    SIGTERM or SIGINT stops within a second or so: what was embedded is kept, the
    rest stays pending, and the exit status is 128 + the signal's number.
    """
    options, model = app.library_backbone()  # a bad backbone or weights: said at once
    store = app.store
    from facestore.backbones import space_of
    from facestore.daemon.signals import StopEvent, stop_on_signals
    from facestore.embedding import embed_pending

    total = store.queue.count_pending(space_of(model).config_hash)
    stop = StopEvent()
    with stop_on_signals(stop) as received, progress_bar(total, "embed") as bar:
        report = embed_pending(store, model, batch_size=options.batch_size, progress=bar, stop=stop)
    if received:
        click.echo(
            f"Stopped by {signal.Signals(received[0]).name} after embedding {report.embedded} "
            "faces; the rest stays pending. Run 'facestore embed' again to resume.",
            err=True,
        )
        sys.exit(128 + received[0])
    if as_json:
        print_json(report.as_json())
    else:
        click.echo(
            f"embedded {report.embedded}, failed {report.failed}, "
            f"pending {report.pending} ({report.seconds:.1f}s)"
        )


@click.command("import", cls=FacestoreCommand)
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_app()
def import_command(app: App, directory: Path, as_json: bool) -> None:
    """Add the crops under DIRECTORY as verified faces: one folder per person.

    The folder name is the person_id. JPEG, PNG and WebP files are stored as
    they are; other formats Pillow reads (PGM, BMP, TIFF) are stored as PNG.
    Files that are not images (or are corrupt), and files directly in DIRECTORY,
    are skipped and listed once each with the reason. When no file can be
    imported, the command exits 1 and creates no database.
    If the database has no 'face' table, a minimal one is created. Every run
    appends rows: importing a folder twice adds its faces twice.
    """
    from facestore import db as database
    from facestore.importer import check_folder, count_files, import_folder

    check_folder(directory)  # before the database file is created
    database.require_driver(app.db_url)  # before the first file is read

    def open_engine() -> Engine:  # at the first importable file
        engine = app.engine(create=True)
        database.check_connection(engine)
        return engine

    with progress_bar(count_files(directory), "import", unit="file") as bar:
        report = import_folder(open_engine, directory, progress=bar)
    if as_json:
        print_json(report.as_json())
        return
    skipped = report.skipped
    click.echo(
        f"imported {counted(report.faces, 'face')} of {counted(report.people, 'person', 'people')}"
        + (f", skipped {counted(len(skipped), 'file')}:" if skipped else "")
    )
    for item in skipped[:SHOW_SKIPPED]:
        click.echo(f"  {item.path}: {item.reason}")
    if len(skipped) > SHOW_SKIPPED:
        click.echo(f"  ... and {len(skipped) - SHOW_SKIPPED} more (--json lists them all)")
