"""`facestore status`: counts of the cache, the active space and the published model.

Counting the app's faces reads the whole face table (1M faces: about 9 s on SQLite,
whose rows carry the crops). Up to EXACT_UP_TO face ids status counts everything;
above, it gives what facestore's own tables tell through their indexes (under a
second at 1M) unless asked for --exact.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from facestore.training_settings import describe_settings

if TYPE_CHECKING:
    from facestore.store import Store

EXACT_UP_TO = 200_000  # face ids: counted in about 2 s on SQLite


def collect_status(
    store: Store, model: dict[str, Any] | None, exact: bool | None = None
) -> dict[str, Any]:
    """exact: count every face (None: when the library is small enough to be quick)."""
    started = time.perf_counter()
    active = store.spaces.active()
    space_hash = active.config_hash if active else None
    highest = store.library.highest_face_id()
    if exact is None:
        exact = highest is None or highest <= EXACT_UP_TO
    report: dict[str, Any] = {"exact": exact, "highest_face_id": highest}
    spaces = store.spaces.summaries(exact)
    mine = [s for s in spaces if s.config_hash == space_hash]
    report["vectors"] = mine[0].vectors if mine else 0
    if exact:
        report.update(store.library.counts(space_hash).as_json())
    else:  # from facestore's own tables, through their indexes
        report.update({"faces": None, "verified": None, "embedded": None, "pending": None})
        report["failed"] = mine[0].failed if mine else 0
        report["stale"] = sum(s.vectors for s in spaces if s.config_hash != space_hash)
    report["active_space"] = (
        {"backbone": active.backbone, "config_hash": active.config_hash} if active else None
    )
    report["model"] = model
    report["low_quality"] = store.quality.count(space_hash) if space_hash else 0
    queue = store.queue.count_queued(space_hash) if space_hash else None
    report["queue"] = queue.as_json() if queue else None
    report["spaces"] = [s.as_json() for s in spaces]
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def shown(accuracy: float | None) -> str:
    """An accuracy for people: n/a when the model had no validation split."""
    return "n/a (no validation split)" if accuracy is None else f"{accuracy:.3f}"


def format_status(report: dict[str, Any]) -> str:
    space = report["active_space"]
    model = report["model"]
    if report["exact"]:
        lines = [
            f"faces:        {report['faces']}",
            f"verified:     {report['verified']}",
            f"embedded:     {report['embedded']} verified faces with a vector in the active space",
            f"pending:      {report['pending']} verified faces still to embed (no vector, no "
            "failure)",
            f"vectors:      {report['vectors']} in the active space (verified or not)",
        ]
    else:
        lines = [
            f"faces:        not counted (face ids up to {report['highest_face_id']}; "
            "'facestore status --exact' counts them, slowly)",
            f"vectors:      {report['vectors']} in the active space (verified or not)",
        ]
    lines += [
        f"failed:       {report['failed']}",
        f"stale:        {report['stale']}",
        "active space: "
        + (f"{space['backbone']} {space['config_hash'][:12]}" if space else "none yet"),
        "model:        "
        + (
            f"{model['version']} (accuracy {shown(model['accuracy'])})"
            if model
            else "none published yet (run 'facestore retrain')"
        ),
    ]
    if model and model.get("settings"):
        lines.append(f"training:     {describe_settings(model['settings'])} (reused by retrains)")
    if report.get("low_quality"):
        lines.append(
            f"low quality:  {report['low_quality']} unverified faces get no name and join no "
            "group ('facestore failures --low-quality' lists them)"
        )
    queue = report.get("queue")
    if queue and queue["queued"]:
        lines.append(
            f"work queue:   {queue['queued']} faces queued by the triggers (verified or not, "
            f"new or changed), {queue['leased']} leased by workers"
        )
    for space in report.get("spaces", []):
        mark = "*" if space["active"] else " "
        missing = (
            f", {space['missing']} verified faces missing" if space["missing"] is not None else ""
        )
        lines.append(
            f"  {mark} space {space['backbone']} {space['config_hash'][:12]}: "
            f"{space['vectors']} vectors (verified or not){missing}"
        )
    if report["exact"]:
        lines.append(f"counted in {report['seconds']:.1f} s")
    return "\n".join(lines)
