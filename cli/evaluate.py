"""`facestore evaluate`: how well the library's own verified faces are recognised."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from facestore.cli.app import App, pass_app
from facestore.cli.common import FacestoreCommand, counted, print_json
from facestore.cli.options import far_target_option
from facestore.settings import CLASSIFIER_NAMES, DEFAULT_FOLDS

if TYPE_CHECKING:  # the library is imported where used: --help starts fast
    from facestore.evaluate import Evaluation

EVALUATED_BY_DEFAULT = ("auto", "svc", "lda", "logreg", "knn", "centroid")


@click.command("evaluate", cls=FacestoreCommand)
@click.option(
    "--classifier",
    "classifiers",
    type=click.Choice(CLASSIFIER_NAMES),
    multiple=True,
    help="Classifier to measure (repeatable). The first one is used for the open-set "
    "curve. [default: all, the open-set curve with auto]",
)
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=DEFAULT_FOLDS,
    show_default=True,
    help="Folds of the closed-set stratified k-fold (fewer if no person has that many faces).",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="How many random choices of stranger people the open-set curve averages.",
)
@far_target_option
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a PNG of the open-set curve and the closed-set accuracies.",
)
@pass_app()
def evaluate_command(
    app: App,
    classifiers: tuple[str, ...],
    folds: int,
    seeds: int,
    far: float,
    as_json: bool,
    plot: Path | None,
) -> None:
    """Measure recognition on the database's own verified faces (active space).

    \b
    - closed set: stratified k-fold accuracy per classifier;
    - open set: whole people held out as strangers (a quarter, several seeds),
      30% of every other person's faces held out as known test faces; named
      right / named wrongly / left unknown, and strangers rejected, against the
      false-accept target, with the point retrain's rule picks;
    - the pairs of people confused most;
    - people whose faces form two separate groups (maybe two people under one name).

    Reads cached vectors only (run 'facestore embed' first); publishes nothing.
    """
    from facestore.classifiers import classifier_factory
    from facestore.evaluate import evaluate
    from facestore.retrain import library_dataset

    if plot is not None:  # a missing extra fails before the work, not after
        from facestore.plots import require_matplotlib

        require_matplotlib()
    data = library_dataset(app.store)
    space, dataset = data.space, data.dataset
    names = list(dict.fromkeys(classifiers or EVALUATED_BY_DEFAULT))
    factories = {name: classifier_factory(name) for name in names}
    progress = None if as_json else (lambda line: click.echo(line, err=True))
    result = evaluate(
        dataset,
        factories,
        names[0],
        folds=folds,
        seeds=range(seeds),
        far=far,
        progress=progress,
    )
    if plot is not None:
        from facestore.plots import plot_evaluation  # matplotlib: only when asked for

        plot_evaluation(result, plot)
    if as_json:
        print_json({"space": space.label, **result.as_json(), "plot": str(plot) if plot else None})
        return
    click.echo(report_lines(result, space.label))
    if plot is not None:
        click.echo(f"plot written to {plot}")


def report_lines(result: Evaluation, space: str) -> str:
    from facestore.classifiers import resolve_name

    lines = [
        f"space {space}: {counted(result.faces, 'verified face')} of "
        f"{counted(result.people, 'person', 'people')}",
        "",
    ]
    lines.append("closed set (k-fold accuracy):")
    for name, closed in result.closed_set.items():
        label = f"{name} ({resolve_name(name, result.faces)})" if name == "auto" else name
        accuracy = f"{closed.accuracy:.4f} +- {closed.std:.4f}"
        lines.append(f"  {label:12s} {accuracy} ({closed.folds} folds)")
    lines += [
        "",
        f"open set ({result.classifier}; {result.strangers_per_seed} people held out as "
        f"strangers, {len(result.seeds)} seeds):",
        "  target  named_right  named_wrong  unknown  strangers_rejected",
    ]
    for p in result.curve:
        mark = " <- calibrated" if p.far_target == result.calibrated.far_target else ""
        lines.append(
            f"  {p.far_target:6.3f}  {p.named_right:11.3f}  {p.named_wrong:11.3f}  "
            f"{p.unknown:7.3f}  {p.strangers_rejected:18.3f}{mark}"
        )
    if all(p.far_target != result.calibrated.far_target for p in result.curve):
        p = result.calibrated
        lines.append(
            f"  {p.far_target:6.3f}  {p.named_right:11.3f}  {p.named_wrong:11.3f}  "
            f"{p.unknown:7.3f}  {p.strangers_rejected:18.3f} <- calibrated"
        )
    lines += ["", "most confused pairs (k-fold errors):"]
    lines += [f"  {a} ~ {b}: {n}" for a, b, n in result.confused_pairs] or ["  none"]
    lines += ["", "faces in two groups (two people under one name? a hint: pose splits too):"]
    lines += [
        f"  {p.person_id}: groups of {p.groups[0]} and {p.groups[1]} faces, "
        f"{p.ratio:.1f}x the usual spread"
        for p in result.split_people
    ] or ["  none"]
    return "\n".join(lines)
