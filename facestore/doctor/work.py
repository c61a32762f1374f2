"""The embedding work: the weights resolve to the active space, the queue moves, which
faces failed, which leases belong to workers that are gone."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from facestore.backbones import Backbone, Space, space_of
from facestore.doctor.checks import FAIL, OK, WARN, Check
from facestore.embedding import process_alive
from facestore.errors import FacestoreError
from facestore.schema import embedding, embedding_failure, embedding_job
from facestore.settings import WEIGHTS
from facestore.store import Store, database_now, lease_is_dead, worker_host


def check_weights(build_backbone: Callable[[str | None], Backbone], active: Space | None) -> Check:
    name = active.backbone if active else None
    try:
        backbone = build_backbone(name)
    except FacestoreError as exc:
        return Check(
            "weights", FAIL, exc.for_command_line, "see the message: the file and where to put it"
        )
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
            f"point {WEIGHTS.for_command_line()} at the file the space was built with, or "
            "move to these weights with 'facestore reembed'",
        )
    return Check(
        "weights",
        FAIL,
        f"the configured backbone gives space {built.label}, the active space is {active.label}",
        "use the backbone options the space was built with, or 'facestore reembed'",
    )


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
        if lease_is_dead(str(owner), expires, now, host, process_alive):
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
