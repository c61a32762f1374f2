"""Settings resolved from what was given and the environment: the one place facestore
reads environment variables. The settings themselves (names, types, defaults, help,
variables) are declared in facestore.settings; the CLI's options are built from those,
so click reads the variables too (`envvar=`). No other module reads `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facestore.errors import ConfigurationError
from facestore.settings import (
    BACKBONE,
    BATCH_SIZE,
    DB,
    DEFAULT_BACKBONE,
    DEFAULT_MODEL_DIR,
    DEFAULT_PRECISION,
    DEVICE,
    DEVICE_DECODE,
    DEVICE_DECODES,
    ENGINE,
    PRECISION,
    PRECISIONS,
    WEIGHTS,
    WORKER_HOST,
    cite,
)

__all__ = [
    "DEFAULT_BACKBONE",
    "DEFAULT_MODEL_DIR",
    "DEFAULT_PRECISION",
    "DEVICE_DECODES",
    "PRECISIONS",
    "BackboneSettings",
    "configured_worker_host",
    "database_url",
    "resolve_backbone",
    "resolve_db",
    "torch_home",
]


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
    batch_size: int | None = None  # None: the backbone's default for its device
    precision: str = DEFAULT_PRECISION  # part of the embedding space
    channels_last: bool = False  # memory layout only: not part of the space
    compile: bool = False  # torch.compile: not part of the space
    device_decode: str = "auto"  # the GPU route for JPEGs: not part of the space
    engine: str = "auto"  # what runs the network (facestore.backbones.engines): not either


def configured_worker_host(env: Mapping[str, str] = os.environ) -> str | None:
    """This worker's machine name in leases, where host names clash (settings.WORKER_HOST)."""
    return env.get(WORKER_HOST.env) or None


def torch_home(env: Mapping[str, str] = os.environ) -> Path:
    """The torch hub cache facenet-pytorch uses: $TORCH_HOME, else $XDG_CACHE_HOME/torch."""
    default = os.path.join(env.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(env.get("TORCH_HOME", default)))


def resolve_db(option: str | None, env: Mapping[str, str] = os.environ) -> str:
    value = option or env.get(DB.env)
    if not value:
        raise ConfigurationError(
            f"No database given. Give {cite(DB)}: a SQLite file path or a SQLAlchemy URL."
        )
    return database_url(value)


def resolve_backbone(
    given: Mapping[str, Any] | None = None, env: Mapping[str, str] = os.environ
) -> BackboneSettings:
    """The backbone settings from what was given (setting name -> value, as in
    facestore.settings.BACKBONE_SETTINGS, plus channels_last and compile_model), else
    the environment, else the defaults."""
    given = given or {}

    def value(setting: Any) -> Any:
        return given.get(setting.name) or env.get(setting.env) or None

    weights = value(WEIGHTS)
    size_given = value(BATCH_SIZE)
    try:
        size = int(size_given) if size_given is not None else None
    except ValueError:
        raise ConfigurationError(
            f"{cite(BATCH_SIZE)} must be a whole number, got {size_given!r}."
        ) from None
    if size is not None and size < 1:
        raise ConfigurationError(f"{cite(BATCH_SIZE)} must be at least 1, got {size}.")
    precision = value(PRECISION) or DEFAULT_PRECISION
    if precision not in PRECISIONS:
        raise ConfigurationError(
            f"Unknown precision {precision!r} ({cite(PRECISION)}). Use one of: "
            f"{', '.join(PRECISIONS)}."
        )
    return BackboneSettings(
        name=value(BACKBONE) or DEFAULT_BACKBONE,
        weights=Path(str(weights)).expanduser() if weights else None,
        device=value(DEVICE) or "auto",
        batch_size=size,
        precision=precision,
        channels_last=bool(given.get("channels_last")),
        compile=bool(given.get("compile_model")),
        device_decode=value(DEVICE_DECODE) or DEVICE_DECODE.default,
        engine=value(ENGINE) or ENGINE.default,
    )
