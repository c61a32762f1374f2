"""`facestore status` and `facestore failures`: reads only, so they start fast (no torch,
scikit-learn or Alembic)."""

from __future__ import annotations

import dataclasses

import click

from facestore.cli.app import App, pass_app
from facestore.cli.common import FacestoreCommand, print_json


@click.command(cls=FacestoreCommand)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--exact/--quick",
    default=None,
    help="Count every face (reads the whole face table: about 9 s at 1M faces on SQLite), "
    "or only what facestore's own tables tell (under a second). Default: exact up to "
    "200,000 face ids, quick above.",
)
@pass_app()
def status(app: App, as_json: bool, exact: bool | None) -> None:
    """Counts of faces, vectors, pending and failed faces, the active space and the model.

    \b
    JSON keys: exact, highest_face_id, faces, verified, embedded, pending (these four
    null when not exact), vectors (of the active space, verified or not), failed,
    stale, active_space, model, low_quality (unverified faces the daemon found below
    the model's quality gate), queue, spaces, seconds (how long the counting took).
    """
    store = app.store  # a database that is wrong is said before the rest loads
    from facestore.repository import ModelRepository
    from facestore.status import collect_status, format_status

    report = collect_status(store, ModelRepository(app.model_dir).summary(), exact)
    if as_json:
        print_json(report)
    else:
        click.echo(format_status(report))


@click.command(cls=FacestoreCommand)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most this many.")
@click.option(
    "--low-quality",
    is_flag=True,
    help="List the unverified faces found low quality instead (no name, no group).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_app()
def failures(app: App, limit: int | None, low_quality: bool, as_json: bool) -> None:
    """List the faces that could not be embedded in the active space, and why.

    Newest first: face_id, person_id, the reason, how many times the current
    crop was tried, and when it last failed (ISO 8601 UTC). A failed face is
    tried again when the app changes its crop. JSON: a list of {face_id,
    person_id, error, attempts, failed_at}.

    With --low-quality: the unverified faces that `facestore watch` found below
    the current model's quality gate, worst first, with the signal below its
    floor (size, sharpness, compression or face score), the crop's shorter side
    in pixels, its sharpness, the JPEG quality of its bytes and its face score (how
    much it looks like a face, 0-1). JSON: a list of {face_id, quality, reason,
    side, sharpness, jpeg_quality, face_score}.
    """
    store = app.store
    active = store.spaces.active()
    if low_quality:
        low = store.quality.listing(active.config_hash, limit) if active else []
        if as_json:
            print_json([dataclasses.asdict(face) for face in low])
            return
        if not low:
            click.echo("no low-quality faces")
        for face in low:
            side = "?" if face.side is None else f"{face.side} px"
            sharp = "?" if face.sharpness is None else f"{face.sharpness:.4f}"
            jpeg = "?" if face.jpeg_quality is None else f"{face.jpeg_quality:.0f}"
            score = "?" if face.face_score is None else f"{face.face_score:.3f}"
            click.echo(
                f"face {face.face_id}: quality {face.quality:.2f}, low {face.reason} "
                f"(side {side}, sharpness {sharp}, JPEG quality {jpeg}, face score {score})"
            )
        return
    rows = store.library.failures(active.config_hash, limit) if active else []
    if as_json:
        print_json([row.as_json() for row in rows])
        return
    if not rows:
        click.echo("no failed faces" + ("" if active else " (nothing embedded yet)"))
    for row in rows:
        click.echo(
            f"face {row.face_id} (person {row.person_id}): {row.error} "
            f"[{row.attempts} attempt{'s' if row.attempts != 1 else ''}, last {row.failed_at}]"
        )
