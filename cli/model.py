"""`facestore model list` and `facestore model rollback`: the published versions. Reads
JSON files only, so it starts fast."""

from __future__ import annotations

import click

from facestore.cli.app import App, pass_app
from facestore.cli.common import CommandGroup, print_json
from facestore.errors import ModelNotFoundError
from facestore.status import shown
from facestore.training_settings import describe_settings


@click.group(cls=CommandGroup)
def model() -> None:
    """List published model versions, show one, or roll back to one."""


@model.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app(db=False)
def list_command(app: App, as_json: bool) -> None:
    """Show the versions kept under model/history/, newest first (* = current)."""
    from facestore.repository import ModelRepository

    model_dir = app.model_dir
    rows = ModelRepository(model_dir).history()
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo(f"no published models in {model_dir}")
    for row in rows:
        mark = "*" if row["current"] else " "
        click.echo(
            f"{mark} {row['version']}  {row['classifier']}  accuracy {shown(row['accuracy'])}  "
            f"classes {row['classes_kept']}  train {row['n_train']}"
        )


@model.command()
@click.argument("version", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app(db=False)
def show(app: App, version: str | None, as_json: bool) -> None:
    """Show one version (default: the current one): when it was trained, on which
    backbone and space, its accuracy and 'unknown' threshold, and the training
    settings every later retrain reuses unless they are given again."""
    from facestore.repository import ModelRepository

    repository = ModelRepository(app.model_dir)
    version = version or repository.current_version()
    if version is None:
        raise ModelNotFoundError(
            f"No published model in {app.model_dir}. Run 'facestore train' first."
        )
    row = repository.describe(version)
    if as_json:
        print_json(row)
        return
    threshold = row["unknown_threshold"]
    click.echo(
        "\n".join(
            [
                f"version:     {row['version']}{' (current)' if row['current'] else ''}",
                f"created:     {row['created_at'] or 'n/a'}",
                f"backbone:    {row['backbone'] or 'n/a'} (space {(row['space'] or 'n/a')[:12]})",
                f"classifier:  {row['classifier']}",
                f"accuracy:    {shown(row['accuracy'])} (held-out faces)",
                f"trained on:  {trained_on(row)}",
                "unknown at:  "
                + (f"distance > {threshold:.4f}" if threshold is not None else "n/a"),
                f"settings:    {describe_settings(row['settings'])}",
            ]
        )
    )


@model.command()
@click.argument("version", required=False)
@pass_app(db=False)
def rollback(app: App, version: str | None) -> None:
    """Make VERSION current again (default: the version before the current one).

    The version's integrity is checked first; the switch is atomic.
    """
    from facestore.repository import ModelRepository

    restored = ModelRepository(app.model_dir).rollback(version)
    click.echo(f"current model is now {restored}")


def trained_on(row: dict) -> str:
    """The published model is refit on every kept face, after its held-out measure."""
    held = row.get("n_val") or 0
    if row.get("n_train") is None:
        return "n/a"
    faces = row["n_train"] + held
    measured = f" (accuracy measured first on {held} held out)" if held else ""
    return f"{faces} faces of {row['classes_kept']} people{measured}"
