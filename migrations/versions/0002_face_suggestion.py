"""Suggestions for unverified faces, written by the daemon for the tagging app.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from facestore.migrations import triggers

# BIGINT on PostgreSQL, INTEGER on SQLite (what 0001 always created there)
FACE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _face_columns() -> dict[str, sa.types.TypeEngine]:
    return {c["name"]: c["type"] for c in sa.inspect(op.get_bind()).get_columns("face")}


def upgrade() -> None:
    columns = _face_columns()
    op.create_table(
        "face_suggestion",
        sa.Column("face_id", FACE_ID, primary_key=True, autoincrement=False),
        sa.Column("person_id", columns["person_id"], nullable=False),  # the app's own type
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        for sql in [*triggers.drop(triggers.V1_NAMES), *triggers.sqlite_v2("verified" in columns)]:
            op.execute(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for sql in [*triggers.drop(triggers.V2_NAMES), *triggers.sqlite_v1()]:
            op.execute(sql)
    op.drop_table("face_suggestion")
