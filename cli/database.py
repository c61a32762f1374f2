"""`facestore db upgrade | current | downgrade REV`."""

from __future__ import annotations

import click

from facestore.cli.app import App, pass_app
from facestore.cli.common import CommandGroup


@click.group(cls=CommandGroup)
def db() -> None:
    """Install, inspect or remove facestore's tables and triggers in the app's database.

    facestore's Alembic history is kept in its own version table,
    facestore_alembic_version, so it never touches the app's alembic_version.
    """


@db.command()
@click.argument("revision", default="head")
@pass_app()
def upgrade(app: App, revision: str) -> None:
    """Create or update facestore's tables and triggers (default: to head)."""
    from facestore import db as database

    engine = app.engine()
    database.upgrade(engine, revision)
    click.echo(f"facestore schema is at {database.current_revision(engine)}")


@db.command()
@pass_app()
def current(app: App) -> None:
    """Show the facestore schema revision of the database and the expected head."""
    from facestore import db as database

    engine = app.engine()
    database.check_connection(engine)
    revision = database.current_revision(engine)
    head = database.head_revision()
    state = "at head" if revision == head else f"behind, head is {head}"
    click.echo(f"{revision or 'none'} ({state})")


@db.command()
@click.argument("revision")
@pass_app()
def downgrade(app: App, revision: str) -> None:
    """Downgrade to REVISION; 'base' removes every facestore table and trigger."""
    from facestore import db as database

    engine = app.engine()
    database.downgrade(engine, revision)
    click.echo(f"facestore schema is at {database.current_revision(engine) or 'base'}")
