"""schema.py (what the code reads and writes) matches what the migrations create."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from facestore.schema import ALEMBIC_VERSION_TABLE, OWN_TABLES, metadata
from tests.support.backends import AppDatabase


def _own(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
    if type_ == "table":
        return name in OWN_TABLES and name != ALEMBIC_VERSION_TABLE
    table = getattr(obj, "table", None)
    return table is None or table.name in OWN_TABLES


def _types_differ(
    context: Any, inspected: Any, metadata_column: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    # face_suggestion.person_id and face_rejection.person_id are created with the app's
    # person_id type (INTEGER here); schema.py declares Text and the store retypes them
    # on use: not drift.
    app_typed = ("face_suggestion", "face_rejection")
    if metadata_column.table.name in app_typed and metadata_column.name == "person_id":
        return False
    return None  # alembic's own comparison


def test_the_migrated_schema_matches_schema_py(make_app: Callable[..., AppDatabase]) -> None:
    app = make_app()  # upgraded to head
    engine = sa.create_engine(app.url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_object": _own,
                    "compare_type": _types_differ,
                    "compare_server_default": False,
                },
            )
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diff == []
