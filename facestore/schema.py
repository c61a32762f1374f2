"""Tables facestore owns, and reflection of the app's `face` table."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from facestore.errors import FaceTableError

FACE_TABLE = "face"
REQUIRED_FACE_COLUMNS = ("id", "face_crop_blob", "person_id")
ALEMBIC_VERSION_TABLE = "facestore_alembic_version"

# face ids: BIGINT on PostgreSQL (apps use bigserial), INTEGER on SQLite (same values)
FACE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

embedding_space = sa.Table(
    "embedding_space",
    metadata,
    sa.Column("config_hash", sa.String(64), primary_key=True),
    sa.Column("backbone", sa.String(200), nullable=False),
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("activated_at", sa.Float, nullable=True),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("device_info", sa.Text, nullable=True),
)

embedding = sa.Table(
    "embedding",
    metadata,
    sa.Column("face_id", FACE_ID, primary_key=True, autoincrement=False),
    sa.Column("space_hash", sa.String(64), primary_key=True),
    sa.Column("crop_sha256", sa.String(64), nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # quality signals measured when embedded (NULL: embedded before revision 0008)
    sa.Column("crop_side", sa.Integer, nullable=True),
    sa.Column("sharpness", sa.Float, nullable=True),
    # the JPEG quality of the crop's bytes (NULL: before revision 0009, or not told)
    sa.Column("jpeg_quality", sa.Float, nullable=True),
    # how much the crop looks like a face, 0..1 (NULL: before revision 0010)
    sa.Column("face_score", sa.Float, nullable=True),
    # the current model's verdict on an unverified face, set only when it is low quality
    sa.Column("quality", sa.Float, nullable=True),
    sa.Column("quality_reason", sa.String(20), nullable=True),
    sa.Index("ix_embedding_space_hash", "space_hash"),
    sa.Index(
        "ix_embedding_low_quality",
        "space_hash",
        sqlite_where=sa.text("quality IS NOT NULL"),
        postgresql_where=sa.text("quality IS NOT NULL"),
    ),
)

embedding_failure = sa.Table(
    "embedding_failure",
    metadata,
    sa.Column("face_id", FACE_ID, primary_key=True, autoincrement=False),
    sa.Column("space_hash", sa.String(64), primary_key=True),
    sa.Column("crop_sha256", sa.String(64), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("failed_at", sa.Float, nullable=False),
)

face_suggestion = sa.Table(
    "face_suggestion",
    metadata,
    sa.Column("face_id", FACE_ID, primary_key=True, autoincrement=False),
    sa.Column("person_id", sa.Text, nullable=False),  # created with the app's person_id type
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

face_rejection = sa.Table(
    "face_rejection",
    metadata,
    sa.Column("face_id", FACE_ID, primary_key=True, autoincrement=False),
    sa.Column("person_id", sa.Text, primary_key=True),  # created with the app's person_id type
    sa.Column("created_at", sa.Float, nullable=False),  # defaults to now: the app may omit it
)

CLUSTER_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

face_cluster = sa.Table(
    "face_cluster",
    metadata,
    sa.Column("cluster_id", CLUSTER_ID, primary_key=True, autoincrement=False),
    sa.Column("space_hash", sa.String(64), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("representative_face_id", FACE_ID, nullable=False),
    sa.Column("distance", sa.Float, nullable=False),  # the cut, in the space's cosine distance
    sa.Column("min_size", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

face_cluster_member = sa.Table(
    "face_cluster_member",
    metadata,
    sa.Column("face_id", FACE_ID, primary_key=True, autoincrement=False),
    sa.Column("cluster_id", CLUSTER_ID, nullable=False),
    sa.Column("joined_at", sa.Float, nullable=False),
    sa.Index("ix_face_cluster_member_cluster", "cluster_id"),
)

# A cluster id no group kept, because a re-cluster merged its faces into another group
face_cluster_absorbed = sa.Table(
    "face_cluster_absorbed",
    metadata,
    sa.Column("cluster_id", CLUSTER_ID, primary_key=True, autoincrement=False),
    sa.Column("into_cluster_id", CLUSTER_ID, nullable=False),
    sa.Column("absorbed_at", sa.Float, nullable=False),
    sa.Index("ix_face_cluster_absorbed_into", "into_cluster_id"),
)

embedding_job = sa.Table(
    "embedding_job",
    metadata,
    sa.Column("face_id", FACE_ID, primary_key=True, autoincrement=False),
    sa.Column("space_hash", sa.String(64), primary_key=True),
    sa.Column("priority", sa.SmallInteger, nullable=False),  # 0 verified, 1 unverified
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("enqueued_at", sa.Float, nullable=False),
    sa.Index("ix_embedding_job_claim", "space_hash", "priority", "face_id"),
)

# Faces whose training pair (face_id -> person_id of a verified face with a vector) may
# have changed, appended by the triggers and by facestore's own vector writes; readers
# keep the highest seq they have seen. face_id NULL: every face (the app truncated).
face_change = sa.Table(
    "face_change",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("face_id", FACE_ID, nullable=True),
)

OWN_TABLES = (
    "face_change",
    "embedding_job",
    "embedding",
    "embedding_failure",
    "embedding_space",
    "face_suggestion",
    "face_rejection",
    "face_cluster",
    "face_cluster_member",
    "face_cluster_absorbed",
    ALEMBIC_VERSION_TABLE,
)


@dataclass(frozen=True)
class FaceTable:
    """The app's `face` table as facestore reads it."""

    table: sa.Table
    has_verified: bool

    @property
    def verified_clause(self) -> sa.ColumnElement[bool]:
        """verified = person_id IS NOT NULL and, where the column exists, verified is true."""
        c = self.table.c
        clause: sa.ColumnElement[bool] = c.person_id.is_not(None)
        if self.has_verified:
            if isinstance(c.verified.type, sa.Boolean):
                clause = sa.and_(clause, c.verified.is_(sa.true()))
            else:  # an integer flag
                clause = sa.and_(clause, sa.func.coalesce(c.verified, 0) != 0)
        return clause


def reflect_face_table(bind: Engine | Connection) -> FaceTable:
    inspector = sa.inspect(bind)
    if not inspector.has_table(FACE_TABLE):
        raise FaceTableError(
            "This database has no 'face' table. Point --db at the tagging app's database, "
            "or create one with 'facestore import DIR'."
        )
    columns = {c["name"] for c in inspector.get_columns(FACE_TABLE)}
    missing = [name for name in REQUIRED_FACE_COLUMNS if name not in columns]
    if missing:
        raise FaceTableError(
            f"The 'face' table lacks the column(s) {', '.join(missing)}. facestore needs "
            "id, face_crop_blob and person_id; check that --db is the tagging app's database."
        )
    table = sa.Table(FACE_TABLE, sa.MetaData(), autoload_with=bind)
    return FaceTable(table=table, has_verified="verified" in columns)
