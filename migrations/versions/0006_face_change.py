"""A log of the faces whose training pair may have changed, so the retrain policy reads
only those instead of every face.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from facestore.migrations import triggers

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "face_change",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("face_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    )
    verified = triggers.verified_type(op.get_bind())
    if op.get_bind().dialect.name == "sqlite":
        statements = triggers.sqlite_v6_log(verified)
    else:
        statements = triggers.postgresql_v6_log(verified)
    for sql in statements:
        op.execute(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        statements = triggers.drop(triggers.SQLITE_LOG_TRIGGERS)
    else:
        statements = triggers.drop_log_postgresql()
    for sql in statements:
        op.execute(sql)
    op.drop_table("face_change")
