"""`facestore doctor`: checks an installation end to end; each check says what is wrong
and what to do. The checks read; the trigger check writes inside a transaction that it
rolls back. By concern: database.py (database, face table, schema, triggers, vacuum),
work.py (weights, queue, failures, leases), model.py (model, last retrain), service.py
(a running `facestore serve`, when given its address)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from facestore.backbones import Backbone
from facestore.doctor.checks import FAIL, OK, SKIP, WARN, Check, exit_code, format_checks, skipped
from facestore.doctor.database import (
    check_database,
    check_disk,
    check_face_table,
    check_schema,
    check_triggers,
    check_vacuum,
)
from facestore.doctor.model import check_last_retrain, check_model
from facestore.doctor.service import check_service
from facestore.doctor.work import check_failures, check_leases, check_queue, check_weights
from facestore.settings import DEFAULT_STUCK_AFTER
from facestore.store import Store

__all__ = [
    "FAIL",
    "OK",
    "SKIP",
    "WARN",
    "Check",
    "Installation",
    "diagnose",
    "exit_code",
    "format_checks",
]


@dataclass
class Installation:
    """What the checks look at; the CLI builds it."""

    engine: Engine
    model_dir: Path
    build_backbone: Callable[[str | None], Backbone]  # for the active space's backbone name
    stuck_after: float = DEFAULT_STUCK_AFTER
    service: tuple[str, int] | None = None  # a running `facestore serve` to ask
    service_token: str | None = None


def diagnose(install: Installation) -> list[Check]:
    """Every check, in order; those that need what failed are skipped."""
    checks = _installation(install)
    if install.service is not None:
        host, port = install.service
        checks.append(check_service(host, port, install.service_token, install.model_dir))
    return checks


def _installation(install: Installation) -> list[Check]:
    checks = [check_database(install.engine)]
    if checks[-1].status == FAIL:
        return checks + skipped("the database", ["disk", "face table", "schema", "triggers"])
    checks.append(check_disk(install.engine))
    checks.append(check_face_table(install.engine))
    checks.append(check_schema(install.engine))
    failed = [c.name for c in checks if c.status == FAIL]
    if failed:
        rest = ["triggers", "weights", "model", "queue", "failures", "leases", "last retrain"]
        rest.append("vacuum")
        return checks + skipped(" and ".join(f"the {name}" for name in failed), rest)
    store = Store(install.engine)
    active = store.spaces.active()
    checks.append(check_triggers(store, active))
    checks.append(check_weights(install.build_backbone, active))
    model, bundle = check_model(install.model_dir, active)
    checks.append(model)
    checks.append(check_queue(store, active, install.stuck_after))
    checks.append(check_failures(install.engine, active))
    checks.append(check_leases(install.engine))
    checks.append(check_last_retrain(store, bundle, active))
    checks.append(check_vacuum(install.engine))
    return checks
