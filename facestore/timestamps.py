"""One timestamp format for everything facestore prints: ISO 8601 in UTC with a Z."""

from __future__ import annotations

import datetime as dt


def iso_utc(epoch: float | None) -> str | None:
    """2026-11-26T12:46:55.436Z from seconds since the epoch; None stays None."""
    if epoch is None:
        return None
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso_utc(dt.datetime.now(dt.timezone.utc).timestamp())  # type: ignore[return-value]


def normalise(value: str | None) -> str | None:
    """An ISO 8601 string with any offset (older models wrote +00:00) as UTC with a Z."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return iso_utc(parsed.timestamp())
