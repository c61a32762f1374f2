"""`facestore predict`: a name, or "unknown", for crop files and faces of the database."""

from __future__ import annotations

from pathlib import Path

import click

from facestore.cli.app import App, pass_app
from facestore.cli.common import FacestoreCommand, print_json
from facestore.cli.options import min_confidence_option, min_quality_option
from facestore.importer import crop_or_raw
from facestore.predict import DEFAULT_TOP_K, Predictor, predict_faces


@click.command(cls=FacestoreCommand)
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--face-id",
    "face_ids",
    type=int,
    multiple=True,
    help="Predict for a face of the database (needs --db); reuses its cached vector when "
    "one exists in the model's space. Repeatable.",
)
@click.option("--top-k", type=click.IntRange(min=1), default=DEFAULT_TOP_K, show_default=True)
@min_confidence_option
@min_quality_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_app(backbone=True)
def predict(
    app: App,
    files: tuple[Path, ...],
    face_ids: tuple[int, ...],
    top_k: int,
    min_confidence: float | None,
    min_quality: float | None,
    as_json: bool,
) -> None:
    """Predict person_id and confidence for crop FILES and/or --face-id faces.

    Uses the current model in --model-dir and the backbone it was trained with
    (weights resolved as for 'embed'). A face below the model's quality gate
    (too small, blurred, or not face-like) is named nobody. JSON: a list of
    {input, person_id, confidence, top_k: [{person_id, confidence}], quality,
    gated}, person_id null for unknown; quality is the gate's score (1.0 its
    floor, null without a gate), gated whether it kept the face from a name, with
    low_quality naming the signal. Exits 1 if any input could not be read as an
    image.
    """
    if not files and not face_ids:
        raise click.UsageError("Give at least one FILE or --face-id.")
    predictor = Predictor.load(app.model_dir, app.backbone_settings())
    results = []
    if face_ids:
        results += predict_faces(app.store, predictor, face_ids, top_k, min_confidence, min_quality)
    if files:
        # Any format Pillow reads is accepted here, converted as 'facestore import' does.
        crops = [(str(path), crop_or_raw(path)) for path in files]
        results += predictor.predict_crops(crops, top_k, min_confidence, min_quality)
    if as_json:
        print_json([r.as_json() for r in results])
    else:
        for r in results:
            who = "unknown" if r.person_id is None else str(r.person_id)
            if r.gated:
                who = f"unknown, low quality ({r.gated})"
            detail = f"error: {r.error}" if r.error else f"{who} ({r.confidence:.3f})"
            click.echo(f"{r.input}: {detail}")
    if any(r.error for r in results):
        click.get_current_context().exit(1)
