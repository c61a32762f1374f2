"""`facestore doctor`: checks an installation end to end; each check says what is wrong
and what to do. The checks read; the trigger check writes inside a transaction that it
rolls back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from facestore import artifacts
from facestore import db as database
from facestore.backbones import Backbone, Space, space_of
from facestore.daemon.policy import count_changes
from facestore.embedding import process_alive
from facestore.errors import FacestoreError
from facestore.schema import (
    embedding,
    embedding_failure,
    embedding_job,
    face_change,
    reflect_face_table,
)
from facestore.store import LeaseOwner, Store, database_now, worker_host

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
DEFAULT_STUCK_AFTER = 900.0  # seconds: a queue this old with no vector written since is stuck
CACHE_TRIGGERS = (
    "facestore_face_delete",
    "facestore_face_insert",
    "facestore_face_update_crop",
    "facestore_face_verified",
)
SQLITE_LOG_TRIGGERS = (
    "facestore_face_log_insert",
    "facestore_face_log_delete",
    "facestore_face_log_update",
)
PG_TRIGGERS = (
    *CACHE_TRIGGERS,
    "facestore_face_truncate",
    "facestore_face_changed",
    "facestore_face_log",
    "facestore_face_log_truncate",
)
SQLITE_TRIGGERS = (*CACHE_TRIGGERS, *SQLITE_LOG_TRIGGERS)
# downgrading below 0005 and upgrading again recreates every trigger (0005 and 0006's)
BEFORE_TRIGGERS = "0004"
REINSTALL_TRIGGERS = (
    "reinstall them: 'facestore db downgrade {previous}' then 'facestore db upgrade' "
    "(recreates facestore's triggers; the cache stays, the daemon rebuilds the clusters)"
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok, warn (works, but look), fail, skip (not checked: an earlier failure)
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class Installation:
    """What the checks look at; the CLI builds it."""

    engine: Engine
    model_dir: Path
    build_backbone: Callable[[str | None], Backbone]  # for the active space's backbone name
    stuck_after: float = DEFAULT_STUCK_AFTER


def diagnose(install: Installation) -> list[Check]:
    """Every check, in order; those that need what failed are skipped."""
    checks = [check_database(install.engine)]
    if checks[-1].status == FAIL:
        return checks + _skipped("the database", ["face table", "schema", "triggers"])
    checks.append(check_face_table(install.engine))
    checks.append(check_schema(install.engine))
    failed = [c.name for c in checks if c.status == FAIL]
    if failed:
        rest = ["triggers", "weights", "model", "queue", "failures", "leases", "last retrain"]
        rest.append("vacuum")
        return checks + _skipped(" and ".join(f"the {name}" for name in failed), rest)
    store = Store(install.engine)
    active = store.spaces.active()
    checks.append(check_triggers(store, active))
    checks.append(check_weights(install, active))
    model, bundle = check_model(install.model_dir, active)
    checks.append(model)
    checks.append(check_queue(store, active, install.stuck_after))
    checks.append(check_failures(install.engine, active))
    checks.append(check_leases(install.engine))
    checks.append(check_last_retrain(store, bundle, active))
    checks.append(check_vacuum(install.engine))
    return checks


def _skipped(cause: str, names: list[str]) -> list[Check]:
    return [Check(name, SKIP, f"not checked: fix {cause} first") for name in names]


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
        return Check("database", FAIL, str(exc), "check --db / FACESTORE_DB and the server")
    return Check("database", OK, detail)


def check_face_table(engine: Engine) -> Check:
    try:
        face = reflect_face_table(engine)
    except FacestoreError as exc:
        return Check("face table", FAIL, str(exc), "point --db at the tagging app's database")
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
    expected = SQLITE_TRIGGERS if engine.dialect.name == "sqlite" else PG_TRIGGERS
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
    face = store.db.face.table
    face_id = store.library.highest_face_id()
    if face_id is None:
        return Check("triggers", OK, "installed; firing not checked: the face table is empty")
    with engine.connect() as conn:
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


def check_weights(install: Installation, active: Space | None) -> Check:
    name = active.backbone if active else None
    try:
        backbone = install.build_backbone(name)
    except FacestoreError as exc:
        return Check("weights", FAIL, str(exc), "see the message: the file and where to put it")
    built = space_of(backbone)
    sha = built.config.get("weights_sha256")
    shown = f"sha256 {str(sha)[:12]}" if sha else "built in"
    if active is None:
        return Check("weights", OK, f"{built.backbone}: resolve ({shown}); no space yet")
    if built.config_hash == active.config_hash:
        return Check("weights", OK, f"{built.backbone}: {shown}, the active space's")
    expected = active.config.get("weights_sha256")
    if sha and expected and sha != expected:
        return Check(
            "weights",
            FAIL,
            f"the weights given have sha256 {str(sha)[:12]}, the active space "
            f"{active.label} was built with {str(expected)[:12]}",
            "point --weights / FACESTORE_WEIGHTS at the file the space was built with, or "
            "move to these weights with 'facestore reembed'",
        )
    return Check(
        "weights",
        FAIL,
        f"the configured backbone gives space {built.label}, the active space is {active.label}",
        "use the backbone options the space was built with, or 'facestore reembed'",
    )


def check_model(model_dir: Path, active: Space | None) -> tuple[Check, artifacts.Bundle | None]:
    """The check, and the model when it loads."""
    current = artifacts.current_version(model_dir)
    if current is None:
        return Check("model", FAIL, f"no model published in {model_dir}", "facestore retrain"), None
    try:
        bundle = artifacts.load_bundle(model_dir)
    except FacestoreError as exc:
        return Check(
            "model",
            FAIL,
            f"model {current} does not load: {exc}",
            "facestore model rollback (to the previous version), or facestore retrain",
        ), None
    space = str(bundle.embedding_config.get("config_hash"))
    if active is not None and space != active.config_hash:
        return Check(
            "model",
            FAIL,
            f"model {current} was trained in space {space[:12]}, not the active {active.label}",
            "facestore retrain",
        ), bundle
    return Check("model", OK, f"{current} loads (files verified), space matches"), bundle


def check_queue(store: Store, active: Space | None, stuck_after: float) -> Check:
    if active is None:
        return Check("queue", OK, "no embedding space yet: nothing queued")
    job = embedding_job.c
    with store.engine.connect() as conn:
        queued, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(job.enqueued_at)).where(
                job.space_hash == active.config_hash
            )
        ).one()
        latest = conn.execute(
            sa.select(sa.func.max(embedding.c.created_at)).where(
                embedding.c.space_hash == active.config_hash
            )
        ).scalar()
        now = database_now(conn)
    if not queued:
        return Check("queue", OK, "empty")
    age = now - float(oldest)
    since = None if latest is None else now - float(latest)
    detail = f"{queued} faces queued, the oldest for {_ago(age)}" + (
        f"; the last vector was written {_ago(since)} ago" if since is not None else ""
    )
    if age > stuck_after and (since is None or since > stuck_after):
        return Check(
            "queue",
            FAIL,
            f"stuck: {detail}",
            "start 'facestore watch' (or run 'facestore embed'); if one runs, read its log",
        )
    return Check("queue", OK, detail)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def check_failures(engine: Engine, active: Space | None) -> Check:
    if active is None:
        return Check("failures", OK, "no embedding space yet")
    failure = embedding_failure.c
    reason = sa.func.substr(failure.error, 1, 60)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(reason, sa.func.count())
            .where(failure.space_hash == active.config_hash)
            .group_by(reason)
            .order_by(sa.func.count().desc())
            .limit(5)
        ).all()
    if not rows:
        return Check("failures", OK, "no face failed to embed")
    detail = "; ".join(f"{n} x {text}" for text, n in rows)
    return Check(
        "failures",
        WARN,
        f"by reason: {detail}",
        "fix or replace those crops in the app: a changed crop is tried again",
    )


def check_leases(engine: Engine) -> Check:
    """Leases whose worker is gone: expired, or held by a dead process of this host."""
    job = embedding_job.c
    host = worker_host()
    with engine.connect() as conn:
        now = database_now(conn)
        rows = conn.execute(
            sa.select(job.lease_owner, job.lease_expires_at, sa.func.count())
            .where(job.lease_owner.is_not(None))
            .group_by(job.lease_owner, job.lease_expires_at)
        ).all()
    dead: dict[str, int] = {}
    for owner, expires, count in rows:
        parsed = LeaseOwner.parse(str(owner))
        here_and_dead = parsed is not None and parsed.host == host and not process_alive(parsed.pid)
        if here_and_dead or (expires is not None and float(expires) < now):
            dead[str(owner)] = dead.get(str(owner), 0) + int(count)
    if not dead:
        held = sum(int(c) for _, _, c in rows)
        return Check("leases", OK, f"{held} faces leased by live workers" if held else "none held")
    owners = ", ".join(f"{o} ({n})" for o, n in sorted(dead.items()))
    return Check(
        "leases",
        WARN,
        f"{sum(dead.values())} faces leased by workers that are gone: {owners}",
        "nothing to do: another worker takes them over when the lease expires (a worker "
        "starting on the same host frees them at once)",
    )


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


def check_last_retrain(
    store: Store, bundle: artifacts.Bundle | None, active: Space | None
) -> Check:
    if bundle is None:
        return Check("last retrain", SKIP, "not checked: no loadable model (see 'model')")
    created: Any = bundle.metrics.get("created_at")
    detail = f"model {bundle.version}, trained {created}"
    if active is None:
        return Check("last retrain", OK, detail)
    changes = count_changes(bundle.training_set, store.library.training_pairs(active.config_hash))
    if changes:
        return Check(
            "last retrain",
            OK,
            f"{detail}; {changes} labelled faces changed since (the daemon retrains by its "
            "policy; 'facestore retrain' does it now)",
        )
    return Check("last retrain", OK, f"{detail}; up to date with the labels")


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0


def format_checks(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status:<4}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status in (FAIL, WARN):
            lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    return "\n".join(lines)
