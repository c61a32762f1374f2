"""`facestore db upgrade | current | downgrade REV`."""

from __future__ import annotations

import click

from facestore import db as database
from facestore.cli.common import CommandGroup, pass_settings
from facestore.config import Settings


@click.group(cls=CommandGroup)
def db() -> None:
    """Install, inspect or remove facestore's tables and triggers in the app's database.

    facestore's Alembic history is kept in its own version table,
    facestore_alembic_version, so it never touches the app's alembic_version.
    """


@db.command()
@click.argument("revision", default="head")
@pass_settings
def upgrade(settings: Settings, revision: str) -> None:
    """Create or update facestore's tables and triggers (default: to head)."""
    engine = database.create_engine(settings.db_url, must_exist=True)
    database.upgrade(engine, revision)
    click.echo(f"facestore schema is at {database.current_revision(engine)}")


@db.command()
@pass_settings
def current(settings: Settings) -> None:
    """Show the facestore schema revision of the database and the expected head."""
    engine = database.create_engine(settings.db_url, must_exist=True)
    database.check_connection(engine)
    revision = database.current_revision(engine)
    head = database.head_revision()
    state = "at head" if revision == head else f"behind, head is {head}"
    click.echo(f"{revision or 'none'} ({state})")


@db.command()
@click.argument("revision")
@pass_settings
def downgrade(settings: Settings, revision: str) -> None:
    """Downgrade to REVISION; 'base' removes every facestore table and trigger."""
    engine = database.create_engine(settings.db_url, must_exist=True)
    database.downgrade(engine, revision)
    click.echo(f"facestore schema is at {database.current_revision(engine) or 'base'}")
