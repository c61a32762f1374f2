"""Face quality: the JPEG quality of each embedded crop's bytes, the fourth signal of the
quality gate (facestore.quality.compression_quality).

Vectors embedded before this revision keep a NULL JPEG quality: the gate judges them
on their other signals until they are embedded again (`facestore reembed`, or a new
crop). Nothing is re-embedded or read here.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("embedding", sa.Column("jpeg_quality", sa.Float, nullable=True))


def downgrade() -> None:
    # SQLite 3.35+ drops a column in place (no batch copy, which the triggers on the
    # app's face table would refuse while the table is renamed)
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE embedding DROP COLUMN jpeg_quality")
    else:
        op.drop_column("embedding", "jpeg_quality")
