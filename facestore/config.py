"""Settings, and the one place facestore reads environment variables.

The CLI's options name the variables below (click reads them with `envvar=`,
validates them like options and shows them in `--help`); library code that needs
one calls a function here. No other module reads `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from facestore.errors import ConfigurationError

ENV_DB = "FACESTORE_DB"
ENV_MODEL_DIR = "FACESTORE_MODEL_DIR"
ENV_BACKBONE = "FACESTORE_BACKBONE"
ENV_WEIGHTS = "FACESTORE_WEIGHTS"
ENV_DEVICE = "FACESTORE_DEVICE"
ENV_BATCH_SIZE = "FACESTORE_BATCH_SIZE"
ENV_PRECISION = "FACESTORE_PRECISION"
ENV_WORKER_HOST = "FACESTORE_WORKER_HOST"
ENV_DEVICE_DECODE = "FACESTORE_DEVICE_DECODE"
DEVICE_DECODES = ("auto", "on", "off")

DEFAULT_BACKBONE = "vggface2"
# float32 everywhere by default: the precision is part of the embedding space, so a
# CPU worker and a GPU worker must not pick different ones on their own.
PRECISIONS = ("float32", "float16", "bfloat16")
DEFAULT_PRECISION = "float32"
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
    batch_size: int | None = None  # None: the backbone's default for its device
    precision: str = DEFAULT_PRECISION  # part of the embedding space
    channels_last: bool = False  # memory layout only: not part of the space
    compile: bool = False  # torch.compile: not part of the space
    device_decode: str = "auto"  # the GPU route for JPEGs: not part of the space


def configured_worker_host(env: Mapping[str, str] = os.environ) -> str | None:
    """FACESTORE_WORKER_HOST: this worker's machine name in leases, where hostnames clash."""
    return env.get(ENV_WORKER_HOST) or None


def torch_home(env: Mapping[str, str] = os.environ) -> Path:
    """The torch hub cache facenet-pytorch uses: $TORCH_HOME, else $XDG_CACHE_HOME/torch."""
    default = os.path.join(env.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(env.get("TORCH_HOME", default)))


def resolve_db(option: str | None, env: Mapping[str, str] = os.environ) -> str:
    value = option or env.get(ENV_DB)
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
    *,
    precision: str | None = None,
    channels_last: bool = False,
    compile_model: bool = False,
    device_decode: str | None = None,
) -> BackboneSettings:
    weights_value = weights or env.get(ENV_WEIGHTS) or None
    try:
        from_env = env.get(ENV_BATCH_SIZE)
        size = batch_size or (int(from_env) if from_env else None)
    except ValueError:
        raise ConfigurationError(
            f"{ENV_BATCH_SIZE} must be a whole number, got {env[ENV_BATCH_SIZE]!r}."
        ) from None
    if size is not None and size < 1:
        raise ConfigurationError(f"--batch-size must be at least 1, got {size}.")
    chosen_precision = precision or env.get(ENV_PRECISION) or DEFAULT_PRECISION
    if chosen_precision not in PRECISIONS:
        raise ConfigurationError(
            f"Unknown precision {chosen_precision!r}. Use one of: {', '.join(PRECISIONS)}."
        )
    return BackboneSettings(
        name=name or env.get(ENV_BACKBONE) or DEFAULT_BACKBONE,
        weights=Path(weights_value).expanduser() if weights_value else None,
        device=device or env.get(ENV_DEVICE) or "auto",
        batch_size=size,
        precision=chosen_precision,
        channels_last=channels_last,
        compile=compile_model,
        device_decode=device_decode or env.get(ENV_DEVICE_DECODE) or "auto",
    )
