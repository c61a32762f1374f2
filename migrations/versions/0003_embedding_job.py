"""Work queue with leases for several workers, fed by the triggers; the PostgreSQL triggers.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from facestore.migrations import triggers

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# BIGINT on PostgreSQL, INTEGER on SQLite
FACE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "embedding_job",
        sa.Column("face_id", FACE_ID, primary_key=True, autoincrement=False),
        sa.Column("space_hash", sa.String(64), primary_key=True),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("enqueued_at", sa.Float, nullable=False),
    )
    claim_order = ["space_hash", "priority", "face_id"]
    op.create_index("ix_embedding_job_claim", "embedding_job", claim_order)
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        statements = [
            *triggers.drop(triggers.V2_NAMES),
            *triggers.sqlite_v3(triggers.verified_type(op.get_bind())),
        ]
    elif dialect == "postgresql":
        statements = [
            *triggers.drop_postgresql(),
            *triggers.postgresql_v3(triggers.verified_type(op.get_bind())),
        ]
    else:
        raise RuntimeError(f"facestore supports SQLite and PostgreSQL, not {dialect}")
    for sql in statements:
        op.execute(sql)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        verified = triggers.verified_type(op.get_bind()) is not None
        for sql in [*triggers.drop(triggers.V2_NAMES), *triggers.sqlite_v2(verified)]:
            op.execute(sql)
    elif dialect == "postgresql":
        for sql in triggers.drop_postgresql():
            op.execute(sql)
    op.drop_index("ix_embedding_job_claim", table_name="embedding_job")
    op.drop_table("embedding_job")
