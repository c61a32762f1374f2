"""Trigger SQL for the migrations, one frozen set per schema revision.

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


def sqlite_v2(has_verified: bool) -> list[str]:
    """Revision 0002: suggestions too, dropped as soon as a face is verified."""
    columns = "person_id, verified" if has_verified else "person_id"
    verified = "NEW.person_id IS NOT NULL" + (" AND NEW.verified" if has_verified else "")
    return [
        *_cache_triggers(("embedding", "embedding_failure", "face_suggestion")),
        f"CREATE TRIGGER facestore_face_verified AFTER UPDATE OF {columns} ON face "
        f"WHEN {verified} BEGIN DELETE FROM face_suggestion WHERE face_id = NEW.id; END",
    ]


def drop(names: tuple[str, ...]) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {name}" for name in names]
