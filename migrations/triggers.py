"""Trigger SQL for the migrations, one frozen set per schema revision and dialect.

Triggers are guests in the app's transactions: plain SQL that cannot fail.
INSERT covers INSERT OR REPLACE (REPLACE's implicit delete fires no DELETE
trigger unless recursive_triggers is on); UPDATE covers upserts and crops edited
in place. A relabel does not touch the cache.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

V1_NAMES = ("facestore_face_delete", "facestore_face_insert", "facestore_face_update_crop")
V2_NAMES = (*V1_NAMES, "facestore_face_verified")


def _forget(row: str, tables: tuple[str, ...]) -> str:
    return " ".join(f"DELETE FROM {table} WHERE face_id = {row}.id;" for table in tables)


def _cache_triggers(tables: tuple[str, ...]) -> list[str]:
    return [
        "CREATE TRIGGER facestore_face_delete AFTER DELETE ON face "
        f"BEGIN {_forget('OLD', tables)} END",
        "CREATE TRIGGER facestore_face_insert AFTER INSERT ON face "
        f"BEGIN {_forget('NEW', tables)} END",
        "CREATE TRIGGER facestore_face_update_crop AFTER UPDATE OF id, face_crop_blob ON face "
        "WHEN OLD.id IS NOT NEW.id OR OLD.face_crop_blob IS NOT NEW.face_crop_blob "
        f"BEGIN {_forget('OLD', tables)} {_forget('NEW', tables)} END",
    ]


def sqlite_v1() -> list[str]:
    """Revision 0001: the cache and its failures."""
    return _cache_triggers(("embedding", "embedding_failure"))


def _sqlite_with_verified(tables: tuple[str, ...], has_verified: bool) -> list[str]:
    columns, verified = _verified_condition("boolean" if has_verified else None)
    return [
        *_cache_triggers(tables),
        f"CREATE TRIGGER facestore_face_verified AFTER UPDATE OF {columns} ON face "
        f"WHEN {verified} BEGIN DELETE FROM face_suggestion WHERE face_id = NEW.id; END",
    ]


def sqlite_v2(has_verified: bool) -> list[str]:
    """Revision 0002: suggestions too, dropped as soon as a face is verified."""
    tables = ("embedding", "embedding_failure", "face_suggestion")
    return _sqlite_with_verified(tables, has_verified)


V3_TABLES = ("embedding", "embedding_failure", "face_suggestion", "embedding_job")
SQLITE_NOW = "(julianday('now') - 2440587.5) * 86400.0"
PG_NOW = "extract(epoch FROM clock_timestamp())"


def _enqueue(verified: str, now: str) -> str:
    """Queue the NEW face in the active space (after _forget: no conflict is possible)."""
    return (
        "INSERT INTO embedding_job (face_id, space_hash, priority, enqueued_at) "
        f"SELECT NEW.id, config_hash, CASE WHEN {verified} THEN 0 ELSE 1 END, {now} "
        "FROM embedding_space WHERE is_active"
    )


def _promote(now: str) -> list[str]:
    """A face just verified: first in the queue, queued if it has no vector or failure."""
    missing = " ".join(
        f"AND NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.face_id = NEW.id "
        f"AND {t}.space_hash = embedding_space.config_hash)"
        for t in ("embedding_job", "embedding", "embedding_failure")
    )
    return [
        "UPDATE embedding_job SET priority = 0 WHERE face_id = NEW.id AND priority <> 0",
        "INSERT INTO embedding_job (face_id, space_hash, priority, enqueued_at) "
        f"SELECT NEW.id, config_hash, 0, {now} FROM embedding_space WHERE is_active {missing}",
    ]


def verified_type(bind: Any) -> str | None:
    """How the app's face.verified column is typed: boolean, integer (0/1) or absent."""
    for column in sa.inspect(bind).get_columns("face"):
        if column["name"] == "verified":
            return "boolean" if isinstance(column["type"], sa.Boolean) else "integer"
    return None


def _verified_condition(verified_type: str | None) -> tuple[str, str]:
    """(the columns that verify a face, the condition that NEW is verified)."""
    if verified_type is None:
        return "person_id", "NEW.person_id IS NOT NULL"
    if verified_type == "boolean":
        return "person_id, verified", "NEW.person_id IS NOT NULL AND NEW.verified"
    return "person_id, verified", "NEW.person_id IS NOT NULL AND coalesce(NEW.verified, 0) <> 0"


def sqlite_v3(
    verified_type: str | None,
    tables: tuple[str, ...] = V3_TABLES,
    on_verified: tuple[str, ...] = ("face_suggestion",),
) -> list[str]:
    """Revision 0003: the triggers also feed the work queue, so new work is found in O(1).

    No statement here can conflict, so the app's OR ABORT / OR FAIL / OR ROLLBACK,
    which would override a conflict clause of ours, cannot make its write fail.
    """
    columns, verified = _verified_condition(verified_type)
    enqueue = _enqueue(verified, SQLITE_NOW)
    promote = "; ".join(_promote(SQLITE_NOW))
    return [
        "CREATE TRIGGER facestore_face_delete AFTER DELETE ON face "
        f"BEGIN {_forget('OLD', tables)} END",
        "CREATE TRIGGER facestore_face_insert AFTER INSERT ON face "
        f"BEGIN {_forget('NEW', tables)} {enqueue}; END",
        "CREATE TRIGGER facestore_face_update_crop AFTER UPDATE OF id, face_crop_blob ON face "
        "WHEN OLD.id IS NOT NEW.id OR OLD.face_crop_blob IS NOT NEW.face_crop_blob "
        f"BEGIN {_forget('OLD', tables)} {_forget('NEW', tables)} {enqueue}; END",
        f"CREATE TRIGGER facestore_face_verified AFTER UPDATE OF {columns} ON face "
        f"WHEN {verified} BEGIN {_forget('NEW', on_verified)} "
        f"{promote}; END",
    ]


# --- PostgreSQL (from revision 0003) -------------------------------------------

PG_FUNCTIONS = (
    "facestore_forget_face",
    "facestore_face_verified",
    "facestore_face_truncated",
    "facestore_face_notify",
)
PG_TRIGGERS = (*V2_NAMES, "facestore_face_truncate", "facestore_face_changed")
NOTIFY_CHANNEL = "facestore_face"


def postgresql_v3(
    verified_type: str | None,
    tables: tuple[str, ...] = V3_TABLES,
    on_verified: tuple[str, ...] = ("face_suggestion",),
) -> list[str]:
    """Row triggers as sqlite_v3, TRUNCATE as a statement trigger, and a NOTIFY wake-up hint.

    verified_type: "boolean", "integer" (a 0/1 flag) or None (no verified column).
    """

    columns, verified = _verified_condition(verified_type)
    # ON CONFLICT: a worker may be queueing the same face in a concurrent transaction
    enqueue = f"{_enqueue(verified, PG_NOW)} ON CONFLICT DO NOTHING;"
    promote = " ".join(f"{sql} ON CONFLICT DO NOTHING;" for sql in _promote(PG_NOW)[1:])
    clear_all = " ".join(f"DELETE FROM {t};" for t in tables)
    return [
        "CREATE FUNCTION facestore_forget_face() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP IN ('DELETE', 'UPDATE') THEN {_forget('OLD', tables)} END IF; "
        f"IF TG_OP IN ('INSERT', 'UPDATE') THEN {_forget('NEW', tables)} {enqueue} END IF; "
        "RETURN NULL; END $$",
        "CREATE FUNCTION facestore_face_verified() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"{_forget('NEW', on_verified)} {_promote(PG_NOW)[0]}; {promote} "
        "RETURN NULL; END $$",
        "CREATE FUNCTION facestore_face_truncated() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN {clear_all} RETURN NULL; END $$",
        "CREATE FUNCTION facestore_face_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"PERFORM pg_notify('{NOTIFY_CHANNEL}', TG_OP); RETURN NULL; END $$",
        "CREATE TRIGGER facestore_face_delete AFTER DELETE ON face "
        "FOR EACH ROW EXECUTE FUNCTION facestore_forget_face()",
        "CREATE TRIGGER facestore_face_insert AFTER INSERT ON face "
        "FOR EACH ROW EXECUTE FUNCTION facestore_forget_face()",
        "CREATE TRIGGER facestore_face_update_crop AFTER UPDATE OF id, face_crop_blob ON face "
        "FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id "
        "OR OLD.face_crop_blob IS DISTINCT FROM NEW.face_crop_blob) "
        "EXECUTE FUNCTION facestore_forget_face()",
        f"CREATE TRIGGER facestore_face_verified AFTER UPDATE OF {columns} ON face "
        f"FOR EACH ROW WHEN ({verified}) EXECUTE FUNCTION facestore_face_verified()",
        "CREATE TRIGGER facestore_face_truncate AFTER TRUNCATE ON face "
        "FOR EACH STATEMENT EXECUTE FUNCTION facestore_face_truncated()",
        "CREATE TRIGGER facestore_face_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
        "ON face FOR EACH STATEMENT EXECUTE FUNCTION facestore_face_notify()",
    ]


# --- Revision 0004: rejections ("this is not X"), written by the app ------------

V4_TABLES = (*V3_TABLES, "face_rejection")
PG_REJECTION_TRIGGER = "facestore_rejection_changed"


def sqlite_v4(verified_type: str | None) -> list[str]:
    """As v3; a face's rejections also go when it is deleted or its crop changes."""
    return sqlite_v3(verified_type, V4_TABLES)


def postgresql_v4(verified_type: str | None) -> list[str]:
    """As v3 with the rejections, and a wake-up hint when the app writes a rejection."""
    return [
        *postgresql_v3(verified_type, V4_TABLES),
        f"CREATE TRIGGER {PG_REJECTION_TRIGGER} AFTER INSERT OR UPDATE OR DELETE "
        "ON face_rejection FOR EACH STATEMENT EXECUTE FUNCTION facestore_face_notify()",
    ]


# --- Revision 0005: clusters of unknown faces -------------------------------------

V5_TABLES = (*V4_TABLES, "face_cluster_member")
V5_ON_VERIFIED = ("face_suggestion", "face_cluster_member")  # a named face leaves its cluster


def sqlite_v5(verified_type: str | None) -> list[str]:
    return sqlite_v3(verified_type, V5_TABLES, V5_ON_VERIFIED)


def postgresql_v5(verified_type: str | None) -> list[str]:
    return [
        *postgresql_v3(verified_type, V5_TABLES, V5_ON_VERIFIED),
        f"CREATE TRIGGER {PG_REJECTION_TRIGGER} AFTER INSERT OR UPDATE OR DELETE "
        "ON face_rejection FOR EACH STATEMENT EXECUTE FUNCTION facestore_face_notify()",
    ]


# --- Revision 0006: the change log the retrain policy reads ----------------------

SQLITE_LOG_TRIGGERS = (
    "facestore_face_log_insert",
    "facestore_face_log_delete",
    "facestore_face_log_update",
)
PG_LOG_TRIGGERS = ("facestore_face_log", "facestore_face_log_truncate")
PG_LOG_FUNCTIONS = ("facestore_log_face", "facestore_log_face_truncate")


def _log(row: str) -> str:
    return f"INSERT INTO face_change (face_id) VALUES ({row}.id);"


def _pair_columns(verified_type: str | None, distinct: str) -> tuple[str, str]:
    """(the columns a training pair depends on, the condition that one of them changed)."""
    columns = ["id", "face_crop_blob", "person_id"] + (["verified"] if verified_type else [])
    changed = " OR ".join(f"OLD.{c} {distinct} NEW.{c}" for c in columns)
    return ", ".join(columns), changed


def sqlite_v6_log(verified_type: str | None) -> list[str]:
    """Revision 0006: every insert, delete, relabel, (un)verify or new crop is logged."""
    columns, changed = _pair_columns(verified_type, "IS NOT")
    return [
        f"CREATE TRIGGER facestore_face_log_insert AFTER INSERT ON face BEGIN {_log('NEW')} END",
        f"CREATE TRIGGER facestore_face_log_delete AFTER DELETE ON face BEGIN {_log('OLD')} END",
        f"CREATE TRIGGER facestore_face_log_update AFTER UPDATE OF {columns} ON face "
        f"WHEN {changed} BEGIN {_log('NEW')} "
        "INSERT INTO face_change (face_id) SELECT OLD.id WHERE OLD.id IS NOT NEW.id; END",
    ]


def postgresql_v6_log(verified_type: str | None) -> list[str]:
    """As sqlite_v6_log; a TRUNCATE logs NULL (every face)."""
    columns, changed = _pair_columns(verified_type, "IS DISTINCT FROM")
    return [
        "CREATE FUNCTION facestore_log_face() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP = 'UPDATE' AND NOT ({changed}) THEN RETURN NULL; END IF; "
        "IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.id IS DISTINCT FROM NEW.id) THEN "
        f"{_log('OLD')} END IF; "
        f"IF TG_OP IN ('INSERT', 'UPDATE') THEN {_log('NEW')} END IF; "
        "RETURN NULL; END $$",
        "CREATE FUNCTION facestore_log_face_truncate() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN INSERT INTO face_change (face_id) VALUES (NULL); RETURN NULL; END $$",
        f"CREATE TRIGGER facestore_face_log AFTER INSERT OR DELETE OR UPDATE OF {columns} "
        "ON face FOR EACH ROW EXECUTE FUNCTION facestore_log_face()",
        "CREATE TRIGGER facestore_face_log_truncate AFTER TRUNCATE ON face "
        "FOR EACH STATEMENT EXECUTE FUNCTION facestore_log_face_truncate()",
    ]


def drop_log_postgresql() -> list[str]:
    return [
        *(f"DROP TRIGGER IF EXISTS {name} ON face" for name in PG_LOG_TRIGGERS),
        *(f"DROP FUNCTION IF EXISTS {name}()" for name in PG_LOG_FUNCTIONS),
    ]


def drop_postgresql() -> list[str]:
    return [
        *(f"DROP TRIGGER IF EXISTS {name} ON face" for name in PG_TRIGGERS),
        *(f"DROP FUNCTION IF EXISTS {name}()" for name in PG_FUNCTIONS),
    ]


def drop(names: tuple[str, ...]) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {name}" for name in names]


# The triggers installed at head, by dialect: what `facestore doctor` expects to find.
INSTALLED_SQLITE = (*V2_NAMES, *SQLITE_LOG_TRIGGERS)
INSTALLED_POSTGRESQL = (*PG_TRIGGERS, *PG_LOG_TRIGGERS)
