"""Face quality: each embedded crop's face score (how much it looks like a face, 0..1:
facestore.faceness), the fourth signal of the quality gate (with size, sharpness and
JPEG quality).

Vectors embedded before this revision keep a NULL face score: the gate judges them on
their other signals until they are embedded again (`facestore reembed`, or a new crop),
and a model trained on them puts no floor under the face score until ten of its
verified faces have one. Nothing is re-embedded or read here.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from facestore.migrations import columns

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("embedding", sa.Column("face_score", sa.Float, nullable=True))


def downgrade() -> None:
    columns.drop_column("embedding", "face_score")
