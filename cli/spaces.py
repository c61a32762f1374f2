"""`facestore reembed` and `facestore prune`: changing the backbone."""

from __future__ import annotations

import signal
import sys
import time

import click
from click import ParameterSource

from facestore.cli.app import App, pass_app
from facestore.cli.common import FacestoreCommand, print_json, progress_bar
from facestore.cli.options import classifier_option
from facestore.errors import FacestoreError


def given_on_command_line(*names: str) -> bool:
    ctx = click.get_current_context()
    return any(ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE for n in names)


@click.command("reembed", cls=FacestoreCommand)
@click.option(
    "--activate/--no-activate",
    default=True,
    show_default=True,
    help="When the new space is complete, retrain in it, publish and activate it.",
)
@click.option(
    "--activate-only",
    is_flag=True,
    help="Embed nothing: activate a space built earlier with --no-activate (the "
    "configured backbone's if --weights/--backbone is given, else --space or the newest).",
)
@click.option("--space", "space_prefix", help="With --activate-only: config_hash (or prefix).")
@classifier_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_app(backbone=True)
def reembed_command(
    app: App,
    activate: bool,
    activate_only: bool,
    space_prefix: str | None,
    classifier: str,
    as_json: bool,
) -> None:
    """Move the store to a new backbone or new weights, with zero downtime.

    Embeds every verified face into the configured backbone's space beside the
    active one (progress bar with ETA; resumable: run it again after an
    interruption). The old space and model keep serving meanwhile. When the new
    space is complete, it trains a model there, publishes it and activates the
    space in one step. JSON keys: space, embedded, failed, activated,
    model_version, seconds.

    SIGTERM or SIGINT stops the build within a second or so: what was embedded
    is kept, nothing is activated, and the exit status is 128 + the signal's
    number.
    """
    from facestore.backbones import space_of
    from facestore.daemon.signals import StopEvent, stop_on_signals
    from facestore.reembed import ReembedReport, activate_recorded, reembed

    store = app.store
    if activate_only:
        started = time.perf_counter()
        chosen = space_prefix
        if given_on_command_line("backbone", "weights"):  # not the environment of the daemon
            chosen = space_of(app.build_backbone()).config_hash
        version = activate_recorded(store, chosen, app.model_dir, classifier)
        active = store.spaces.active()
        report = ReembedReport(
            active.config_hash if active else "",
            0,
            0,
            True,
            version,
            time.perf_counter() - started,
        )
    else:
        options, model = app.library_backbone()
        total = store.queue.count_pending(space_of(model).config_hash)
        stop = StopEvent()
        with stop_on_signals(stop) as received, progress_bar(total, "reembed") as bar:
            report = reembed(
                store,
                model,
                app.model_dir,
                batch_size=options.batch_size,
                activate_space=activate,
                classifier=classifier,
                progress=bar,
                stop=stop,
            )
        if received:
            click.echo(
                f"Stopped by {signal.Signals(received[0]).name} after embedding "
                f"{report.embedded} faces into the new space; nothing was activated. Run "
                "'facestore reembed' again with the same backbone to resume.",
                err=True,
            )
            sys.exit(128 + received[0])
    if as_json:
        print_json(report.as_json())
    else:
        state = (
            f"activated with model {report.model_version}"
            if report.activated
            else "not activated (run 'facestore reembed --activate-only')"
        )
        click.echo(
            f"space {report.space[:12]}: embedded {report.embedded}, failed {report.failed}; "
            f"{state}"
        )


@click.command(cls=FacestoreCommand)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app()
def prune(app: App, yes: bool) -> None:
    """Delete the vectors and failure rows of every space that is not active.

    The active space is never touched. Asks for confirmation unless --yes.
    """
    store = app.store
    inactive = [s for s in store.spaces.summaries() if not s.active]
    vectors = sum(s.vectors for s in inactive)
    if not inactive:
        click.echo("nothing to prune: only the active space is stored")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise FacestoreError(
                f"Pruning would delete {vectors} vectors of {len(inactive)} inactive space(s). "
                "Pass --yes to confirm when not running interactively."
            )
        click.confirm(f"Delete {vectors} vectors of {len(inactive)} inactive space(s)?", abort=True)
    counts = store.spaces.prune_inactive()
    click.echo(
        f"pruned {counts.vectors} vectors and {counts.failures} failures "
        f"of {counts.spaces} inactive space(s)"
    )
