"""Rejections: the app records "this face is not person X"; X is never suggested for it again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from facestore.migrations import triggers

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# BIGINT on PostgreSQL, INTEGER on SQLite
FACE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = {
    "sqlite": sa.text("((julianday('now') - 2440587.5) * 86400.0)"),
    "postgresql": sa.text("extract(epoch FROM now())"),
}


def _face_columns() -> dict[str, sa.types.TypeEngine]:
    return {c["name"]: c["type"] for c in sa.inspect(op.get_bind()).get_columns("face")}


def upgrade() -> None:
    columns = _face_columns()
    dialect = op.get_bind().dialect.name
    op.create_table(
        "face_rejection",
        sa.Column("face_id", FACE_ID, primary_key=True, autoincrement=False),
        sa.Column("person_id", columns["person_id"], primary_key=True),  # the app's own type
        sa.Column("created_at", sa.Float, nullable=False, server_default=NOW[dialect]),
    )
    verified = triggers.verified_type(op.get_bind())
    if dialect == "sqlite":
        statements = [*triggers.drop(triggers.V2_NAMES), *triggers.sqlite_v4(verified)]
    else:
        statements = [*triggers.drop_postgresql(), *triggers.postgresql_v4(verified)]
    for sql in statements:
        op.execute(sql)


def downgrade() -> None:
    verified = triggers.verified_type(op.get_bind())
    if op.get_bind().dialect.name == "sqlite":
        statements = [*triggers.drop(triggers.V2_NAMES), *triggers.sqlite_v3(verified)]
    else:
        statements = [
            f"DROP TRIGGER IF EXISTS {triggers.PG_REJECTION_TRIGGER} ON face_rejection",
            *triggers.drop_postgresql(),
            *triggers.postgresql_v3(verified),
        ]
    for sql in statements:
        op.execute(sql)
    op.drop_table("face_rejection")
