"""The two databases facestore supports, for tests that must hold on both.

SQLite: a file made with plain sqlite3 (tests.support.helpers.make_app_db).
PostgreSQL: a database of its own, with a unique name, on the local server
(127.0.0.1:5432, user postgres, trust auth; FACESTORE_TEST_POSTGRES overrides),
created for one test and dropped after it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from facestore import db as database
from facestore.store import Store
from tests.support.helpers import app_faces, app_snapshot, make_app_db, person_value

BACKENDS = ["sqlite", "postgresql"]
ADMIN_URL = os.environ.get(
    "FACESTORE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

PG_APP_SCHEMA = """
CREATE TABLE photo (id BIGSERIAL PRIMARY KEY, path TEXT NOT NULL, taken_at TEXT);
CREATE TABLE person (id {pid} PRIMARY KEY, name TEXT);
CREATE TABLE face (
    id BIGSERIAL PRIMARY KEY,
    photo_id BIGINT REFERENCES photo(id) ON DELETE CASCADE,
    face_crop_blob BYTEA,
    person_id {pid}{verified}
);
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
INSERT INTO alembic_version VALUES ('app_rev_42');
INSERT INTO photo (path) VALUES ('/photos/1.jpg');
"""


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database on the local server; dropped on the way out."""
    name = f"facestore_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {ADMIN_URL} is not reachable ({exc.orig}). The PostgreSQL tests "
            "need it: start the server (.ci/run does) or set FACESTORE_TEST_POSTGRES."
        )
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


class AppDatabase:
    """The tagging app's side: its own connections, autocommit, plain SQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self.dialect = self.engine.dialect.name
        self._stores: list[Store] = []

    def exec(self, sql: str, **params: Any) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).rowcount

    def exec_many(self, sql: str, rows: list[dict[str, Any]]) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text(sql), rows)

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]

    def ids(self, table: str, column: str = "face_id") -> set[int]:
        return {int(r[0]) for r in self.rows(f"SELECT {column} FROM {table}")}

    def snapshot(self) -> tuple[list[Any], dict[str, list[Any]]]:
        """Schema objects and data of every table: equal before and after a round trip."""
        if self.dialect == "sqlite":
            return app_snapshot(Path(str(self.engine.url.database)))
        objects = self.rows(
            "SELECT 'column', table_name || '.' || column_name, data_type, "
            "coalesce(column_default, '') FROM information_schema.columns "
            "WHERE table_schema = 'public' "
            "UNION ALL SELECT 'trigger', tgname, tgrelid::regclass::text, '' FROM pg_trigger "
            "WHERE NOT tgisinternal "
            "UNION ALL SELECT 'function', proname, '', '' FROM pg_proc "
            "WHERE pronamespace = 'public'::regnamespace "
            "UNION ALL SELECT 'index', indexname, tablename, indexdef FROM pg_indexes "
            "WHERE schemaname = 'public' ORDER BY 1, 2"
        )
        tables = [
            t for (t,) in self.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        data = {t: sorted(self.rows(f"SELECT * FROM {t}"), key=repr) for t in tables}
        return objects, data

    def upgrade(self) -> AppDatabase:
        engine = database.create_engine(self.url)
        database.upgrade(engine)
        engine.dispose()
        return self

    def store(self) -> Store:
        """facestore's side: a Store with its own engine, disposed with this object."""
        store = Store(database.create_engine(self.url))
        self._stores.append(store)
        return store

    def close(self) -> None:
        for store in self._stores:
            store.engine.dispose()
        self.engine.dispose()


def fill_postgres_app(url: str, **faces: Any) -> None:
    """The same app as make_app_db, in PostgreSQL."""
    text_ids = bool(faces.get("text_ids"))
    with_verified = faces.get("with_verified", True)
    people = faces.get("people", 3)
    schema = PG_APP_SCHEMA.format(
        pid="TEXT" if text_ids else "INTEGER",
        verified=",\n    verified BOOLEAN NOT NULL DEFAULT false" if with_verified else "",
    )
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        for statement in filter(str.strip, schema.split(";")):
            conn.exec_driver_sql(statement)
        for p in range(people):
            conn.execute(
                sa.text("INSERT INTO person VALUES (:id, :name)"),
                {"id": person_value(p, text_ids), "name": f"n{p}"},
            )
        rows = app_faces(**faces)
        if rows:
            columns = list(rows[0])
            conn.execute(
                sa.text(
                    f"INSERT INTO face ({', '.join(columns)}) "
                    f"VALUES ({', '.join(':' + c for c in columns)})"
                ),
                rows,
            )
    engine.dispose()


@contextlib.contextmanager
def app_database(backend: str, directory: Path, **faces: Any) -> Iterator[AppDatabase]:
    """A filled app database on the backend (faces: see tests.support.helpers.app_faces)."""
    if backend == "sqlite":
        path = make_app_db(directory / f"app-{uuid.uuid4().hex[:6]}.db", **faces)
        app = AppDatabase(f"sqlite:///{path}")
        try:
            yield app
        finally:
            app.close()
        return
    with postgres_database() as url:
        fill_postgres_app(url, **faces)
        app = AppDatabase(url)
        try:
            yield app
        finally:
            app.close()
