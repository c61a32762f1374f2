"""Embedding cache, spaces, failures, and the triggers on face that keep the cache honest.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from facestore.migrations import triggers

# BIGINT on PostgreSQL, INTEGER on SQLite (what 0001 always created there)
FACE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "embedding_space",
        sa.Column("config_hash", sa.String(64), primary_key=True),
        sa.Column("backbone", sa.String(200), nullable=False),
        sa.Column("config_json", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("activated_at", sa.Float, nullable=True),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("device_info", sa.Text, nullable=True),
    )
    op.create_table(
        "embedding",
        sa.Column("face_id", FACE_ID, primary_key=True, autoincrement=False),
        sa.Column("space_hash", sa.String(64), primary_key=True),
        sa.Column("crop_sha256", sa.String(64), nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_embedding_space_hash", "embedding", ["space_hash"])
    op.create_table(
        "embedding_failure",
        sa.Column("face_id", FACE_ID, primary_key=True, autoincrement=False),
        sa.Column("space_hash", sa.String(64), primary_key=True),
        sa.Column("crop_sha256", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("failed_at", sa.Float, nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        for sql in triggers.sqlite_v1():
            op.execute(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for sql in triggers.drop(triggers.V1_NAMES):
            op.execute(sql)
    op.drop_table("embedding_failure")
    op.drop_index("ix_embedding_space_hash", table_name="embedding")
    op.drop_table("embedding")
    op.drop_table("embedding_space")
