"""`facestore retrain` and `facestore train`: fit and publish a model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from facestore.cli.app import App, pass_app
from facestore.cli.common import FacestoreCommand, counted, print_json, progress_bar
from facestore.cli.options import REMEMBERED, classifier_option, far_option
from facestore.errors import DatabaseError, SchemaNotAtHeadError

if TYPE_CHECKING:  # the library is imported where used: --help starts fast
    from facestore.retrain import RetrainReport


def training_options(func: Any) -> Any:
    for decorator in reversed(
        [
            classifier_option,
            click.option(
                "--val-fraction",
                type=click.FloatRange(0, 1, max_open=True),
                default=None,
                help="Share of each person's faces held out to measure accuracy (0: none). "
                "The published model is then refit on all faces. " + REMEMBERED.format(0.2),
            ),
            click.option(
                "--seed", type=int, default=None, help="Split seed. " + REMEMBERED.format(42)
            ),
            far_option,
            click.option(
                "--keep-versions",
                "keep",
                type=click.IntRange(min=1),
                default=None,
                help="Published versions kept under model/history/ (older ones are "
                "deleted). " + REMEMBERED.format(5),
            ),
            click.option("--json", "as_json", is_flag=True, help="Print a JSON summary."),
        ]
    ):
        func = decorator(func)
    return func


def summary_lines(report: RetrainReport, faces: int | None = None) -> str:
    dropped = ", ".join(map(str, report.classes_dropped)) or "none"
    accuracy = f"{report.accuracy:.4f}" if report.accuracy is not None else "n/a (no validation)"
    lines = [
        f"model {report.version} published ({report.classifier}, {report.seconds:.1f}s)",
        f"faces used: {report.n_train + report.n_val} "
        f"(train {report.n_train}, validation {report.n_val})",
        f"classes kept: {report.classes_kept}; dropped: {dropped} "
        f"({counted(report.samples_dropped, 'face')})",
        f"validation accuracy: {accuracy}",
    ]
    if report.low_quality_left_out:
        lines.append(
            f"low-quality verified faces left out of training: {report.low_quality_left_out} "
            "(blurred, tiny or coarse JPEGs; they still count as named)"
        )
    if report.open_set is not None:
        rule = report.open_set
        lines.append(
            f"unknown rule: distance <= {rule['threshold']:.4f} (false-accept target "
            f"{rule['far_target']:.1%}; on its training faces it accepts "
            f"{rule['genuine_accept_rate']:.1%} of own-person faces)"
        )
    if report.validation_open_set is not None:
        held = report.validation_open_set
        lines.append(
            f"held-out known faces: named right {held['named_right']:.1%}, wrongly "
            f"{held['named_wrong']:.1%}, unknown {held['unknown']:.1%}"
        )
    lines.append(f"settings: {report.settings.describe()} (reused by later retrains)")
    if faces is not None:
        lines.insert(0, f"embedded {counted(faces, 'new face')}")
    return "\n".join(lines)


@click.command("retrain", cls=FacestoreCommand)
@training_options
@pass_app()
def retrain_command(
    app: App,
    classifier: str | None,
    val_fraction: float | None,
    seed: int | None,
    far: float | None,
    keep: int | None,
    as_json: bool,
) -> None:
    """Refit the classifier over the cached vectors and publish a new model version.

    Reads only the vectors of the active space for verified faces; it never
    decodes an image or loads the backbone, so it needs no weights. People with
    fewer than 2 faces are dropped with a warning. Settings not given are the
    current model's (the daemon's retrains reuse them too). JSON keys: version,
    accuracy, n_train, n_val, classes_kept, classes_dropped, samples_dropped,
    seconds, settings.
    """
    from facestore.retrain import retrain

    report = retrain(
        app.store,
        app.model_dir,
        classifier,
        val_fraction=val_fraction,
        seed=seed,
        far=far,
        keep=keep,
    )
    print_json(report.as_json()) if as_json else click.echo(summary_lines(report))


@click.command(cls=FacestoreCommand)
@training_options
@click.option("--upgrade", is_flag=True, help="Run 'facestore db upgrade' first if needed.")
@pass_app(backbone=True)
def train(
    app: App,
    classifier: str | None,
    val_fraction: float | None,
    seed: int | None,
    far: float | None,
    keep: int | None,
    as_json: bool,
    upgrade: bool,
) -> None:
    """Embed what is pending, then retrain and publish: the whole job in one command.

    Ends with a summary: faces used, classes kept and dropped, accuracy, and the
    model version.
    """
    from facestore import db as database

    if upgrade:
        database.upgrade(app.engine())
    try:
        options, model = app.library_backbone()  # a bad backbone or weights: said at once
        store = app.store
    except SchemaNotAtHeadError as exc:
        raise DatabaseError(f"{exc} Or pass --upgrade to do it now.") from exc
    from facestore.backbones import space_of
    from facestore.embedding import embed_pending
    from facestore.retrain import retrain

    with progress_bar(store.queue.count_pending(space_of(model).config_hash), "embed") as bar:
        embedded = embed_pending(store, model, batch_size=options.batch_size, progress=bar)
    report = retrain(
        store, app.model_dir, classifier, val_fraction=val_fraction, seed=seed, far=far, keep=keep
    )
    if as_json:
        print_json({**report.as_json(), "embed": embedded.as_json()})
    else:
        click.echo(summary_lines(report, embedded.embedded))
