"""Clusters of unknown faces: candidate people the app can show and name.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from facestore.migrations import triggers

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# BIGINT on PostgreSQL, INTEGER on SQLite
FACE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "face_cluster",
        sa.Column(
            "cluster_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("space_hash", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("representative_face_id", FACE_ID, nullable=False),
        sa.Column("distance", sa.Float, nullable=False),
        sa.Column("min_size", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "face_cluster_member",
        sa.Column("face_id", FACE_ID, primary_key=True, autoincrement=False),
        sa.Column(
            "cluster_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("joined_at", sa.Float, nullable=False),
    )
    op.create_index("ix_face_cluster_member_cluster", "face_cluster_member", ["cluster_id"])
    verified = triggers.verified_type(op.get_bind())
    if op.get_bind().dialect.name == "sqlite":
        statements = [*triggers.drop(triggers.V2_NAMES), *triggers.sqlite_v5(verified)]
    else:
        statements = [
            f"DROP TRIGGER IF EXISTS {triggers.PG_REJECTION_TRIGGER} ON face_rejection",
            *triggers.drop_postgresql(),
            *triggers.postgresql_v5(verified),
        ]
    for sql in statements:
        op.execute(sql)


def downgrade() -> None:
    verified = triggers.verified_type(op.get_bind())
    if op.get_bind().dialect.name == "sqlite":
        statements = [*triggers.drop(triggers.V2_NAMES), *triggers.sqlite_v4(verified)]
    else:
        statements = [
            f"DROP TRIGGER IF EXISTS {triggers.PG_REJECTION_TRIGGER} ON face_rejection",
            *triggers.drop_postgresql(),
            *triggers.postgresql_v4(verified),
        ]
    for sql in statements:
        op.execute(sql)
    op.drop_index("ix_face_cluster_member_cluster", table_name="face_cluster_member")
    op.drop_table("face_cluster_member")
    op.drop_table("face_cluster")
