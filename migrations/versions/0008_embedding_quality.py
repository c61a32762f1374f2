"""Face quality: the signals measured when a face is embedded, and the current model's
verdict on the faces it found low quality.

Vectors embedded before this revision keep NULL signals: the quality gate judges them
on their vector alone until they are embedded again (`facestore reembed`, or a new
crop). Nothing is re-embedded here.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from facestore.migrations import columns

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = ("crop_side", "sharpness", "quality", "quality_reason")


def upgrade() -> None:
    op.add_column("embedding", sa.Column("crop_side", sa.Integer, nullable=True))
    op.add_column("embedding", sa.Column("sharpness", sa.Float, nullable=True))
    op.add_column("embedding", sa.Column("quality", sa.Float, nullable=True))
    op.add_column("embedding", sa.Column("quality_reason", sa.String(20), nullable=True))
    op.create_index(
        "ix_embedding_low_quality",
        "embedding",
        ["space_hash"],
        sqlite_where=sa.text("quality IS NOT NULL"),
        postgresql_where=sa.text("quality IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_embedding_low_quality", table_name="embedding")
    for column in COLUMNS:
        columns.drop_column("embedding", column)
