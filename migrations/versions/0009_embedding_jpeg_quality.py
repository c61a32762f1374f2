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

from facestore.migrations import columns

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("embedding", sa.Column("jpeg_quality", sa.Float, nullable=True))


def downgrade() -> None:
    columns.drop_column("embedding", "jpeg_quality")
