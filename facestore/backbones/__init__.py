"""Backbone registry, the small protocol backbones implement, and embedding spaces.

A backbone turns RGB PIL images into float32 vectors (not necessarily L2-normalised:
facenet's are, dlib's are not; the open-set rule normalises for itself). Third-party
backbones register a factory in the `facestore.backbones` entry-point group; the
factory takes `BackboneSettings` and returns an object with:

- `name: str`, the registered name;
- `config: dict`, JSON-serialisable, holding everything that changes the vectors
  beyond float noise (weights sha256, image size, normalisation, preprocessing
  version, precision) and nothing else (not the device);
- `dim: int`, the vector length;
- `embed_images(images: Sequence[PIL.Image.Image]) -> np.ndarray` of shape (n, dim).

A backbone may also implement the fast path, `PreparedBackbone`:

- `prepare(image)` turns one image into the model's input array (run in the decode
  workers, beside the model);
- `stack_prepared(rows)` stacks prepared rows into one batch (default: np.stack; the
  GPU route's rows are tensors on the device);
- `embed_prepared(batch)` embeds a stacked batch;
- `device_info` (a property) says where the vectors are computed (recorded, not part
  of the space);
- `default_batch_size`, its batch size when none is given (default 32);
- `decode_device`, a torch device on which its JPEGs are decoded (the GPU route), or
  None (the default).

`PreparedBase` holds the defaults; both built-in backbones inherit it, and a
plugin may too. A backbone without every one of these runs on the plain path
(`embed_images`), in batches of FALLBACK_BATCH_SIZE.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from facestore.config import BackboneSettings
from facestore.errors import BackboneError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "facestore.backbones"


@runtime_checkable
class Backbone(Protocol):
    name: str
    config: Mapping[str, Any]
    dim: int

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...


FALLBACK_BATCH_SIZE = 32  # the plain path's batches, and PreparedBase's default


@runtime_checkable
class PreparedBackbone(Backbone, Protocol):
    """The optional fast path: preprocessing apart from the model, batches as arrays."""

    default_batch_size: int
    decode_device: Any  # a torch device for the GPU route's JPEG decode, or None

    @property
    def device_info(self) -> dict[str, Any]: ...

    def prepare(self, image: Image.Image) -> np.ndarray: ...

    def stack_prepared(self, rows: Sequence[Any]) -> Any: ...

    def embed_prepared(self, batch: Any) -> np.ndarray: ...


class PreparedBase:
    """The defaults of PreparedBackbone's optional members, for a backbone to inherit."""

    default_batch_size: int = FALLBACK_BATCH_SIZE
    decode_device: Any = None

    def stack_prepared(self, rows: Sequence[Any]) -> Any:
        return np.stack(rows)


def batch_size_of(backbone: Backbone) -> int:
    """The backbone's batch size for its device (facenet: 1024 on a GPU)."""
    if isinstance(backbone, PreparedBackbone):
        return int(backbone.default_batch_size)
    return FALLBACK_BATCH_SIZE


BackboneFactory = Callable[[BackboneSettings], Backbone]


@dataclass(frozen=True)
class Space:
    """An embedding space: vectors from different spaces never mix."""

    backbone: str
    config_hash: str
    config: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{self.backbone}/{self.config_hash[:12]}"


def config_hash(backbone: str, config: Mapping[str, Any]) -> str:
    canonical = json.dumps({"backbone": backbone, **config}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def space_of(backbone: Backbone) -> Space:
    return Space(backbone.name, config_hash(backbone.name, backbone.config), dict(backbone.config))


def _facenet_factory(variant: str) -> BackboneFactory:
    def build(settings: BackboneSettings) -> Backbone:
        from facestore.backbones.weights import resolve_weights

        # missing weights are told before torch is imported (2.5 s on a 2-core machine)
        weights = resolve_weights(variant, settings.weights)
        from facestore.backbones.facenet import FacenetBackbone  # imports torch: keep lazy

        return FacenetBackbone.from_settings(
            variant, dataclasses.replace(settings, weights=weights)
        )

    return build


def _dlib_factory(settings: BackboneSettings) -> Backbone:
    from facestore.backbones.dlib_resnet import DlibBackbone  # imports dlib: keep lazy

    return DlibBackbone.from_settings(settings)


_REGISTRY: dict[str, BackboneFactory] = {
    "vggface2": _facenet_factory("vggface2"),
    "casia-webface": _facenet_factory("casia-webface"),
    "dlib": _dlib_factory,
}


def register(name: str, factory: BackboneFactory) -> None:
    """Register a backbone factory under a name (plugins can also use the entry point)."""
    _REGISTRY[name] = factory


def available() -> list[str]:
    names = set(_REGISTRY)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def get_factory(name: str) -> BackboneFactory:
    if name in _REGISTRY:
        return _REGISTRY[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                factory = ep.load()
            except Exception as exc:
                raise BackboneError(
                    f"Backbone plugin {name!r} ({ep.value}) failed to load: {exc}. "
                    "Reinstall the package that provides it."
                ) from exc
            _REGISTRY[name] = factory
            return factory
    raise BackboneError(f"Unknown backbone {name!r}. Choose one of: {', '.join(available())}.")


def build_backbone(settings: BackboneSettings) -> Backbone:
    backbone = get_factory(settings.name)(settings)
    log.info("Backbone %s ready (%s)", backbone.name, space_of(backbone).label)
    return backbone
