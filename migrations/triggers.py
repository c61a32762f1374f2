"""Trigger SQL for the migrations, one frozen set per schema revision and dialect.

Triggers are guests in the app's transactions: plain SQL that cannot fail.
INSERT covers INSERT OR REPLACE (REPLACE's implicit delete fires no DELETE
trigger unless recursive_triggers is on); UPDATE covers upserts and crops edited
in place. A relabel does not touch the cache.
"""

from __future__ import annotations

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
    columns = "person_id, verified" if has_verified else "person_id"
    verified = "NEW.person_id IS NOT NULL" + (" AND NEW.verified" if has_verified else "")
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


def sqlite_v3(has_verified: bool) -> list[str]:
    """Revision 0003: a face's queued job goes with its cache rows."""
    return _sqlite_with_verified(V3_TABLES, has_verified)


# --- PostgreSQL (from revision 0003) -------------------------------------------

PG_FUNCTIONS = (
    "facestore_forget_face",
    "facestore_face_verified",
    "facestore_face_truncated",
    "facestore_face_notify",
)
PG_TRIGGERS = (*V2_NAMES, "facestore_face_truncate", "facestore_face_changed")
NOTIFY_CHANNEL = "facestore_face"


def postgresql_v3(verified_type: str | None) -> list[str]:
    """Row triggers as on SQLite, TRUNCATE as a statement trigger, and a NOTIFY wake-up hint.

    verified_type: "boolean", "integer" (a 0/1 flag) or None (no verified column).
    """

    def forget(row: str) -> str:
        return " ".join(f"DELETE FROM {t} WHERE face_id = {row}.id;" for t in V3_TABLES)

    if verified_type is None:
        columns, verified = "person_id", "NEW.person_id IS NOT NULL"
    elif verified_type == "boolean":
        columns, verified = "person_id, verified", "NEW.person_id IS NOT NULL AND NEW.verified"
    else:
        columns = "person_id, verified"
        verified = "NEW.person_id IS NOT NULL AND coalesce(NEW.verified, 0) <> 0"
    clear_all = " ".join(f"DELETE FROM {t};" for t in V3_TABLES)
    return [
        "CREATE FUNCTION facestore_forget_face() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP IN ('DELETE', 'UPDATE') THEN {forget('OLD')} END IF; "
        f"IF TG_OP IN ('INSERT', 'UPDATE') THEN {forget('NEW')} END IF; "
        "RETURN NULL; END $$",
        "CREATE FUNCTION facestore_face_verified() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "DELETE FROM face_suggestion WHERE face_id = NEW.id; RETURN NULL; END $$",
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


def drop_postgresql() -> list[str]:
    return [
        *(f"DROP TRIGGER IF EXISTS {name} ON face" for name in PG_TRIGGERS),
        *(f"DROP FUNCTION IF EXISTS {name}()" for name in PG_FUNCTIONS),
    ]


def drop(names: tuple[str, ...]) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {name}" for name in names]
