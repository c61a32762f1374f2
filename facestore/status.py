"""`facestore status`: counts of the cache, the active space and the published model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from facestore.store import Store


def collect_status(store: Store, model: dict[str, Any] | None) -> dict[str, Any]:
    active = store.spaces.active()
    report: dict[str, Any] = store.library.counts(active.config_hash if active else None).as_json()
    report["active_space"] = (
        {"backbone": active.backbone, "config_hash": active.config_hash} if active else None
    )
    report["model"] = model
    queue = store.queue.count_queued(active.config_hash) if active else None
    report["queue"] = queue.as_json() if queue else None
    report["spaces"] = [s.as_json() for s in store.spaces.summaries()]
    return report


def shown(accuracy: float | None) -> str:
    """An accuracy for people: n/a when the model had no validation split."""
    return "n/a (no validation split)" if accuracy is None else f"{accuracy:.3f}"


def format_status(report: dict[str, Any]) -> str:
    space = report["active_space"]
    model = report["model"]
    lines = [
        f"faces:        {report['faces']}",
        f"verified:     {report['verified']}",
        f"embedded:     {report['embedded']}",
        f"pending:      {report['pending']}",
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
    queue = report.get("queue")
    if queue and queue["queued"]:
        lines.append(f"work queue:   {queue['queued']} faces, {queue['leased']} leased by workers")
    for space in report.get("spaces", []):
        mark = "*" if space["active"] else " "
        lines.append(
            f"  {mark} space {space['backbone']} {space['config_hash'][:12]}: "
            f"{space['vectors']} vectors, {space['missing']} verified faces missing"
        )
    return "\n".join(lines)
