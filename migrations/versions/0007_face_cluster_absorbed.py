"""Where a cluster went when a re-cluster merged it into another: the app that showed
"group 12" can follow it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

CLUSTER_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "face_cluster_absorbed",
        sa.Column("cluster_id", CLUSTER_ID, primary_key=True, autoincrement=False),
        sa.Column("into_cluster_id", CLUSTER_ID, nullable=False),
        sa.Column("absorbed_at", sa.Float, nullable=False),
    )
    op.create_index("ix_face_cluster_absorbed_into", "face_cluster_absorbed", ["into_cluster_id"])


def downgrade() -> None:
    op.drop_index("ix_face_cluster_absorbed_into", table_name="face_cluster_absorbed")
    op.drop_table("face_cluster_absorbed")
