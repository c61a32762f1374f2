"""The database: reachable, the app's face table, facestore's schema and triggers, and
(PostgreSQL) vacuuming. The trigger check writes inside a transaction it rolls back."""

from __future__ import annotations

import shutil
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from facestore import db as database
from facestore.backbones import Space
from facestore.doctor.checks import FAIL, OK, WARN, Check
from facestore.errors import FacestoreError
from facestore.migrations.triggers import INSTALLED_POSTGRESQL, INSTALLED_SQLITE
from facestore.schema import embedding, embedding_job, face_change, reflect_face_table
from facestore.settings import DB
from facestore.store import Store

# downgrading below 0005 and upgrading again recreates every trigger (0005 and 0006's)
BEFORE_TRIGGERS = "0004"
REINSTALL_TRIGGERS = (
    "reinstall them: 'facestore db downgrade {previous}' then 'facestore db upgrade' "
    "(recreates facestore's triggers; the cache stays, the daemon rebuilds the clusters)"
)


def check_database(engine: Engine) -> Check:
    try:
        database.check_connection(engine)
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                mode = conn.execute(sa.text("PRAGMA journal_mode")).scalar()
                detail = f"SQLite {engine.url.database}, journal_mode={mode}"
            else:
                version = conn.execute(sa.text("SHOW server_version")).scalar()
                detail = f"PostgreSQL {version}"
    except FacestoreError as exc:
        fix = f"check {DB.for_command_line()} and the server"
        return Check("database", FAIL, exc.for_command_line, fix)
    return Check("database", OK, detail)


def _try_triggers(store: Store, active: Space, face_id: int) -> tuple[int, int, int]:
    """Change a face's crop inside a transaction that is rolled back: (jobs queued for it
    in the active space, vectors left, change log rows)."""
    face = store.db.face.table
    with store.engine.connect() as conn:
        transaction = conn.begin()
        try:
            conn.execute(face_change.delete().where(face_change.c.face_id == face_id))
            conn.execute(
                face.update().where(face.c.id == face_id).values(face_crop_blob=b"facestore doctor")
            )
            queued = conn.execute(
                sa.select(sa.func.count()).where(
                    embedding_job.c.face_id == face_id,
                    embedding_job.c.space_hash == active.config_hash,
                )
            ).scalar()
            vectors = conn.execute(
                sa.select(sa.func.count()).where(embedding.c.face_id == face_id)
            ).scalar()
            logged = conn.execute(
                sa.select(sa.func.count()).where(face_change.c.face_id == face_id)
            ).scalar()
        finally:
            transaction.rollback()
    return int(queued or 0), int(vectors or 0), int(logged or 0)


MIN_FREE = 16 << 20  # bytes: less, and a batch's journal may not fit
LOW_FREE_SHARE = 0.05


def check_disk(engine: Engine) -> Check:
    """(SQLite) room on the filesystem of the database file: when it is full, every write
    fails with 'database or disk is full' (the daemon reports not ready and carries on
    once there is room again)."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return Check("disk", OK, "on the database server: watch its disk there")
    folder = Path(str(engine.url.database)).resolve().parent
    usage = shutil.disk_usage(folder)
    shown = (
        f"{usage.free / (1 << 20):,.0f} MiB free of {usage.total / (1 << 20):,.0f} MiB in {folder}"
    )
    if usage.free < MIN_FREE:
        return Check(
            "disk",
            FAIL,
            f"full: {shown}; facestore's writes fail with 'database or disk is full'",
            "free some space on that filesystem (the daemon carries on by itself), or move "
            "the database to a larger one",
        )
    if usage.free < LOW_FREE_SHARE * usage.total:
        return Check("disk", WARN, f"nearly full: {shown}", "free some space on that filesystem")
    return Check("disk", OK, shown)


def check_face_table(engine: Engine) -> Check:
    try:
        face = reflect_face_table(engine)
    except FacestoreError as exc:
        return Check(
            "face table", FAIL, exc.for_command_line, "point --db at the tagging app's database"
        )
    with engine.connect() as conn:
        # max(id): an index read, not a count of the library
        highest = conn.execute(sa.select(sa.func.max(face.table.c.id))).scalar()
    return Check(
        "face table",
        OK,
        f"found; highest id {highest if highest is not None else 'none (empty)'}; "
        f"verified column: {'yes' if face.has_verified else 'no (person_id alone verifies)'}",
    )


def check_schema(engine: Engine) -> Check:
    current, head = database.current_revision(engine), database.head_revision()
    if current == head:
        return Check("schema", OK, f"at head ({head})")
    if current is None:
        return Check("schema", FAIL, "facestore's tables are not installed", "facestore db upgrade")
    if current not in database.known_revisions():
        return Check(
            "schema",
            FAIL,
            f"at {current}, which this facestore does not know (head {head}): a newer version "
            "migrated it",
            "upgrade facestore to the version that migrated the database",
        )
    return Check("schema", FAIL, f"at {current}, behind head {head}", "facestore db upgrade")


def _installed_triggers(conn: sa.Connection) -> set[str]:
    if conn.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    else:
        query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    return {str(name) for (name,) in conn.execute(sa.text(query))}


def check_triggers(store: Store, active: Space | None) -> Check:
    """Installed, and firing: a crop changed inside a rolled-back transaction must queue
    the face in the active space (and drop its vector)."""
    engine = store.engine
    expected = INSTALLED_SQLITE if engine.dialect.name == "sqlite" else INSTALLED_POSTGRESQL
    previous = BEFORE_TRIGGERS
    with engine.connect() as conn:
        missing = sorted(set(expected) - _installed_triggers(conn))
    if missing:
        return Check(
            "triggers",
            FAIL,
            f"missing: {', '.join(missing)}; changes the app makes to faces go unseen",
            REINSTALL_TRIGGERS.format(previous=previous),
        )
    if active is None:
        return Check("triggers", OK, "installed; firing not checked: no embedding space yet")
    face_id = store.library.highest_face_id()
    if face_id is None:
        return Check("triggers", OK, "installed; firing not checked: the face table is empty")
    try:
        queued, vectors, logged = _try_triggers(store, active, face_id)
    except sa.exc.OperationalError as exc:
        return Check(
            "triggers",
            WARN,
            f"installed; firing not checked: the test write failed ({exc.orig})",
            "see the disk check, then run 'facestore doctor' again",
        )
    if queued != 1 or vectors or not logged:
        return Check(
            "triggers",
            FAIL,
            f"installed but not working: a crop change to face {face_id} (rolled back) left "
            f"{queued} job(s), {vectors} stale vector(s) and {logged} change log row(s), "
            "expected 1, 0 and at least 1",
            REINSTALL_TRIGGERS.format(previous=previous),
        )
    return Check("triggers", OK, f"installed and firing (tried on face {face_id}, rolled back)")


CHURNING = ("embedding_job", "face_change", "embedding")  # rows deleted all the time
BLOATED_DEAD_ROWS = 10_000  # and more than twice the live rows


def check_vacuum(engine: Engine) -> Check:
    """(PostgreSQL, a warning) facestore's queue and change log delete rows all the time:
    without autovacuum their dead rows pile up and slow every claim and count."""
    if engine.dialect.name != "postgresql":
        return Check("vacuum", OK, "not needed on SQLite")
    with engine.connect() as conn:
        autovacuum = conn.exec_driver_sql("SHOW autovacuum").scalar() == "on"
        rows = conn.execute(
            sa.text(
                "SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables "
                "WHERE relname IN :tables AND schemaname = current_schema()"
            ).bindparams(sa.bindparam("tables", expanding=True)),
            {"tables": list(CHURNING)},
        ).all()
    bloated = [
        f"{name} ({dead} dead rows, {live} live)"
        for name, live, dead in rows
        if dead > max(BLOATED_DEAD_ROWS, 2 * live)
    ]
    if autovacuum and not bloated:
        return Check("vacuum", OK, "autovacuum is on")
    detail = "autovacuum is " + ("on" if autovacuum else "off")
    return Check(
        "vacuum",
        WARN,
        detail + (": " + ", ".join(bloated) if bloated else ""),
        "turn autovacuum on (postgresql.conf), or run 'VACUUM ANALYZE "
        + ", ".join(CHURNING)
        + "' regularly",
    )
