"""`facestore doctor`: is this installation healthy, and if not, what to fix."""

from __future__ import annotations

from pathlib import Path

import click

from facestore import settings
from facestore.cli.app import App, pass_app
from facestore.cli.common import FacestoreCommand, print_json
from facestore.cli.options import setting_option
from facestore.settings import DEFAULT_STUCK_AFTER


@click.command(cls=FacestoreCommand)
@click.option("--json", "as_json", is_flag=True, help="Print the checks as a JSON list.")
@click.option(
    "--stuck-after",
    type=click.FloatRange(min=1),
    default=DEFAULT_STUCK_AFTER,
    show_default=True,
    help="Seconds after which a queue with no vector written meanwhile counts as stuck.",
)
@click.option(
    "--service",
    metavar="HOST:PORT",
    help="Also ask a running 'facestore serve' there: up, ready, and serving the current model.",
)
@setting_option(settings.TOKEN_FILE, help="The service's token file, if it has one.")
@pass_app(backbone=True)
def doctor(
    app: App, as_json: bool, stuck_after: float, service: str | None, token_file: Path | None
) -> None:
    """Check the installation end to end and say what to fix, one line per check.

    \b
    database      reachable; SQLite's journal mode or the server's version
    disk          (SQLite) room on the database's filesystem: full, facestore's
                  writes fail ('database or disk is full')
    face table    the app's table and its columns
    schema        facestore's migrations at head
    triggers      installed, and firing (a crop change inside a transaction
                  that is rolled back must queue the face)
    weights       the backbone's weights resolve (as 'watch' would: --weights or
                  its environment variable, the torch hub cache) and match the
                  active space
    model         the current model loads (files verified) in the active space
    queue         the oldest queued face; stuck if older than --stuck-after with
                  no vector written meanwhile
    failures      faces that failed to embed, by reason
    leases        faces leased by workers that are gone
    last retrain  when, and how many labels changed since
    service       (with --service) the service answers /healthz, is ready,
                  and serves model/current's version

    Exit status 0 when no check fails (warnings included), 1 otherwise.
    """
    from facestore.cli.serve import read_token
    from facestore.daemon.http import parse_addr
    from facestore.doctor import Installation, diagnose, exit_code, format_checks

    install = Installation(
        engine=app.engine(),
        model_dir=app.model_dir,
        build_backbone=app.build_backbone,
        stuck_after=stuck_after,
        service=parse_addr(service, "--service") if service else None,
        service_token=read_token(token_file),
    )
    checks = diagnose(install)
    if as_json:
        print_json([c.as_json() for c in checks])
    else:
        click.echo(format_checks(checks))
    raise SystemExit(exit_code(checks))
