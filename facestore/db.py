"""Engine factory, write transactions and the migrations runner.

SQLite rules (shared database): pragmas per connection, a busy timeout, and
`BEGIN IMMEDIATE` for every write transaction so a read-then-write never fails
with "database is locked" half-way.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from facestore.errors import (
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailableError,
    SchemaNotAtHeadError,
)
from facestore.locks import advisory_lock
from facestore.schema import ALEMBIC_VERSION_TABLE, reflect_face_table
from facestore.settings import DB, cite

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

# The newest migration. Reading it from the migration scripts means importing Alembic and
# every script (0.2 s at each CLI start): tests/unit/test_migrations.py checks it is
# Alembic's head.
SCHEMA_HEAD = "0010"

BUSY_TIMEOUT_MS = 30_000
MIN_SQLITE = (3, 35)
_BEGIN_MODE = "facestore_sqlite_begin"


def create_engine(url: str, must_exist: bool = False) -> Engine:
    """An engine with facestore's per-connection settings.

    must_exist: refuse a SQLite path that is not there, rather than let SQLite create
    an empty file (only 'facestore import' may create the app's database).
    """
    require_file(url, must_exist)
    if url.startswith("sqlite") and sqlite3.sqlite_version_info < MIN_SQLITE:
        raise DatabaseError(
            f"facestore needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer (for RETURNING "
            f"and MATERIALIZED); this Python links SQLite {sqlite3.sqlite_version}. Use a "
            "Python built against a newer SQLite."
        )
    require_driver(url)
    try:
        if url.startswith("sqlite"):
            engine = sa.create_engine(
                url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
            )
            _install_sqlite_hooks(engine)
        else:
            engine = sa.create_engine(url, pool_pre_ping=True)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise DatabaseError(
            f"Cannot use database URL {url!r}: {exc}. Pass a SQLite path or a SQLAlchemy URL "
            "such as postgresql+psycopg://user@host/db."
        ) from exc
    return engine


DRIVER_EXTRAS = {"postgresql": "postgres"}  # the pip extra that installs a dialect's driver


def require_driver(url: str) -> None:
    """The database driver the URL needs is installed: checked before any work starts,
    with the extra that installs it."""
    try:
        dialect = sa.engine.make_url(url).get_dialect()
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError):
        return  # create_engine says what is wrong with the URL itself
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        extra = DRIVER_EXTRAS.get(dialect.name)
        install = f"pip install 'facestore[{extra}]'" if extra else "install its driver"
        raise DatabaseError(
            f"The database URL {url!r} needs a driver that is not installed ({exc}). Run {install}."
        ) from exc


def require_file(url: str, must_exist: bool = True) -> None:
    """A SQLite URL's path must not be a directory, and must exist unless must_exist is
    False (then SQLite creates it)."""
    parsed = sa.engine.make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return
    path = Path(str(parsed.database))
    if must_exist and not path.exists():
        raise DatabaseError(
            f"The database file {path} does not exist. Check {cite(DB)}; "
            "'facestore import DIR' creates a new database from a folder of crops."
        )
    if path.is_dir():
        raise DatabaseError(f"{path} is a directory, not a database file. Check {cite(DB)}.")


def _install_sqlite_hooks(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_MODE, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A short write transaction: `BEGIN IMMEDIATE` on SQLite, a plain one elsewhere."""
    with engine.connect() as conn:
        conn.execution_options(**{_BEGIN_MODE: "IMMEDIATE"})
        with conn.begin():
            yield conn


# PostgreSQL: no such database, bad password, no such role: setup errors, not outages
SETUP_SQLSTATES = {"3D000", "28000", "28P01"}
SETUP_MESSAGES = ("does not exist", "password authentication failed", "no pg_hba.conf entry")


def sentence(error: object) -> str:
    """A driver's message on one line, ending in one full stop or question mark
    (psycopg's end in '?': not '?.')."""
    lines = [" ".join(line.split()) for line in str(error).splitlines() if line.strip()]
    text = " ".join(line if line.endswith((".", "?", "!", ":")) else f"{line}." for line in lines)
    return text or "no message."


def check_connection(engine: Engine) -> None:
    """Connect and read: a file that is not a database, or a server that refuses us, is
    a setup error (exit 2); a server that does not answer may come back (exit 1)."""
    try:
        with engine.connect() as conn:
            # SQLite reads the file header only on a real read: SELECT 1 would not notice
            probe = "PRAGMA schema_version" if engine.dialect.name == "sqlite" else "SELECT 1"
            conn.execute(sa.text(probe))
    except sa.exc.DBAPIError as exc:
        where = engine.url.render_as_string(hide_password=True)
        if engine.dialect.name == "sqlite" and not isinstance(exc, sa.exc.OperationalError):
            raise DatabaseError(
                f"{engine.url.database} is not a SQLite database ({exc.orig}). Check "
                f"{cite(DB)}: it must be the tagging app's database file."
            ) from exc
        if engine.dialect.name != "sqlite" and not _is_setup_error(exc):
            raise DatabaseUnavailableError(
                f"Cannot reach the database {where}: {sentence(exc.orig)} Check that the "
                f"server is up and {cite(DB)} is right."
            ) from exc
        raise DatabaseError(
            f"Cannot open the database {where}: {sentence(exc.orig)} Check {cite(DB)}"
            + (
                " and that the database exists (createdb NAME)."
                if engine.dialect.name != "sqlite"
                else "."
            )
        ) from exc


def _is_setup_error(exc: sa.exc.DBAPIError) -> bool:
    if getattr(exc.orig, "sqlstate", None) in SETUP_SQLSTATES:
        return True
    return any(m in str(exc.orig) for m in SETUP_MESSAGES)


# --- migrations -------------------------------------------------------------


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's Config, built in code: no alembic.ini at run time."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "facestore.migrations:")
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    return SCHEMA_HEAD


def current_revision(engine: Engine) -> str | None:
    """The revision in facestore's version table (None: not installed). Plain SQL: as
    Alembic reads it, without importing Alembic."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(ALEMBIC_VERSION_TABLE):
            return None
        rows = conn.execute(sa.text(f"SELECT version_num FROM {ALEMBIC_VERSION_TABLE}")).all()
    return str(rows[0][0]) if rows else None


def require_head(engine: Engine) -> None:
    """Refuse to work on a database whose facestore schema is missing or behind."""
    check_connection(engine)
    current, head = current_revision(engine), head_revision()
    if current != head:
        reflect_face_table(engine)  # no app table: 'db upgrade' would refuse too; say why
        raise SchemaNotAtHeadError(current, head)


def known_revisions() -> list[str]:
    """facestore's revisions, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


@contextlib.contextmanager
def _revision_errors(revision: str) -> Iterator[None]:
    from alembic.util import CommandError

    try:
        yield
    except CommandError as exc:
        raise ConfigurationError(
            f"Cannot migrate to {revision!r}: {exc}. Known revisions: base, "
            f"{', '.join(known_revisions())} (head); 'head' is the newest."
        ) from exc


def upgrade(engine: Engine, revision: str = "head") -> None:
    check_connection(engine)
    reflect_face_table(engine)  # refuse before touching anything
    with (
        _revision_errors(revision),
        advisory_lock(engine, "migration"),
        engine.connect() as conn,
    ):
        from alembic import command

        command.upgrade(alembic_config(conn), revision)
        conn.commit()


def downgrade(engine: Engine, revision: str) -> None:
    check_connection(engine)
    with (
        _revision_errors(revision),
        advisory_lock(engine, "migration"),
        engine.connect() as conn,
    ):
        from alembic import command

        command.downgrade(alembic_config(conn), revision)
        conn.commit()
    if revision == "base":
        # Leave nothing of ours behind, not even Alembic's empty version table.
        with write_transaction(engine) as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {ALEMBIC_VERSION_TABLE}"))
