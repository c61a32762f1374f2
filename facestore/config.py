"""Settings, resolved from CLI options and FACESTORE_* environment variables. No I/O."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from facestore.errors import ConfigurationError

DEFAULT_BACKBONE = "vggface2"
DEFAULT_BATCH_SIZE = 32
DEFAULT_MODEL_DIR = "model"


def database_url(value: str) -> str:
    """A SQLAlchemy URL from either a URL or a path to a SQLite file."""
    if "://" in value:
        return value
    return "sqlite:///" + str(Path(value).expanduser().resolve())


@dataclass(frozen=True)
class BackboneSettings:
    name: str = DEFAULT_BACKBONE
    weights: Path | None = None
    device: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE


@dataclass(frozen=True)
class Settings:
    db_url: str
    model_dir: Path = Path(DEFAULT_MODEL_DIR)
    backbone: BackboneSettings = field(default_factory=BackboneSettings)


def configured_worker_host(env: Mapping[str, str] = os.environ) -> str | None:
    """FACESTORE_WORKER_HOST: this worker's machine name in leases, where hostnames clash."""
    return env.get("FACESTORE_WORKER_HOST") or None


def resolve_db(option: str | None, env: Mapping[str, str] = os.environ) -> str:
    value = option or env.get("FACESTORE_DB")
    if not value:
        raise ConfigurationError(
            "No database given. Pass --db PATH (a SQLite file or a SQLAlchemy URL) "
            "or set FACESTORE_DB."
        )
    return database_url(value)


def resolve_backbone(
    name: str | None,
    weights: str | None,
    device: str | None,
    batch_size: int | None,
    env: Mapping[str, str] = os.environ,
) -> BackboneSettings:
    weights_value = weights or env.get("FACESTORE_WEIGHTS") or None
    try:
        size = batch_size or int(env.get("FACESTORE_BATCH_SIZE") or DEFAULT_BATCH_SIZE)
    except ValueError:
        raise ConfigurationError(
            f"FACESTORE_BATCH_SIZE must be a whole number, got {env['FACESTORE_BATCH_SIZE']!r}."
        ) from None
    if size < 1:
        raise ConfigurationError(f"--batch-size must be at least 1, got {size}.")
    return BackboneSettings(
        name=name or env.get("FACESTORE_BACKBONE") or DEFAULT_BACKBONE,
        weights=Path(weights_value).expanduser() if weights_value else None,
        device=device or env.get("FACESTORE_DEVICE") or "auto",
        batch_size=size,
    )
