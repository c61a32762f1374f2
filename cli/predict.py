"""`facestore predict`: a name, or "unknown", for crop files and faces of the database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from facestore.cli.app import App, pass_app
from facestore.cli.common import FacestoreCommand, print_json
from facestore.cli.options import min_confidence_option, min_quality_option
from facestore.errors import ImageDecodeError
from facestore.settings import DEFAULT_TOP_K

if TYPE_CHECKING:  # the library is imported where used: --help starts fast
    from facestore.predict import Prediction, Predictor


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
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=DEFAULT_TOP_K,
    show_default=True,
    help="How many of the most probable people to list for each face (text: the best "
    "guess and the next ones; JSON: top_k).",
)
@min_confidence_option
@min_quality_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_app(backbone="model")
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
    (so there is no --backbone; weights resolved as for 'embed').

    \b
    Each face gets a name or "unknown", and its most probable people:
      confidence  the model's estimate (0 to 1) that the name is right;
      distance    from the face to that person's faces (their centre); the
                  model names a face only within its threshold, shown in the
                  header. An "unknown" face shows its best guess all the same.

    A face below the model's quality gate (too small, blurred, or saved as a
    coarse JPEG) is named nobody. JSON: a list of {input, person_id, confidence,
    top_k: [{person_id, confidence, probability, distance}], quality, gated},
    person_id null for unknown; quality is the gate's score (1.0 its floor,
    null without a gate), gated whether it kept the face from a name, with
    low_quality naming the signal. Exits 1 if any input could not be read as an
    image.
    """
    if not files and not face_ids:
        raise click.UsageError("Give at least one FILE or --face-id.")
    from facestore.predict import Predictor, predict_faces

    predictor = Predictor.load(app.model_dir, app.backbone_settings())
    results = []
    if face_ids:
        results += predict_faces(app.store, predictor, face_ids, top_k, min_confidence, min_quality)
    if files:
        results += predict_files(predictor, files, top_k, min_confidence, min_quality)
    if as_json:
        print_json([r.as_json() for r in results])
    else:
        click.echo(text_header(predictor))
        for r in results:
            click.echo(text_line(r))
    if any(r.error for r in results):
        click.get_current_context().exit(1)


def text_header(predictor: Predictor) -> str:
    rule = predictor.bundle.open_set
    if rule is None:
        return (
            f"# model {predictor.version}: confidence = the classifier's probability "
            "(a model from before the open-set rule; retrain for distances)"
        )
    return (
        f"# model {predictor.version}: confidence = estimated chance the name is right; "
        f"distance = to the person's faces, named within {rule.threshold:.4f}"
    )


def predict_files(
    predictor: Predictor,
    files: tuple[Path, ...],
    top_k: int,
    min_confidence: float | None,
    min_quality: float | None,
) -> list[Prediction]:
    """Any format Pillow reads is accepted here, converted as 'facestore import' does;
    a file that is none says so (not "not a JPEG, PNG or WebP", as a stored crop does)."""
    from facestore.images import crop_bytes
    from facestore.predict import Prediction

    crops, unread = [], {}
    for path in files:
        try:
            crops.append((str(path), crop_bytes(path, check=False)))
        except ImageDecodeError as exc:
            unread[str(path)] = Prediction(str(path), None, 0.0, error=str(exc))
    done = iter(predictor.predict_crops(crops, top_k, min_confidence, min_quality))
    return [unread[str(p)] if str(p) in unread else next(done) for p in files]


def text_line(r: Prediction) -> str:
    """'a.jpg: 17 (confidence 0.982, distance 0.0021); next: 4 (...)', or
    'b.jpg: unknown; best guess 17 (...), 4 (...)'."""
    if r.error:
        return f"{r.input}: error: {r.error}"
    ranked = sorted(r.top_k, key=lambda g: -float(g["confidence"]))  # by the score shown
    guesses = [f"{g['person_id']} ({guess_detail(g)})" for g in ranked]
    if r.person_id is not None:
        named = next((g for g in ranked if g["person_id"] == r.person_id), None)
        detail = guess_detail(named) if named else f"confidence {r.confidence:.3f}"
        others = [t for g, t in zip(ranked, guesses, strict=True) if g is not named]
        return f"{r.input}: {r.person_id} ({detail})" + (
            f"; next: {', '.join(others)}" if others else ""
        )
    verdict = f"unknown, low quality ({r.gated})" if r.gated else "unknown"
    return f"{r.input}: {verdict}" + (f"; best guess {', '.join(guesses)}" if guesses else "")


def guess_detail(guess: dict[str, Any]) -> str:
    distance = guess.get("distance")
    at = "" if distance is None else f", distance {distance:.4f}"
    return f"confidence {guess['confidence']:.3f}{at}"
