"""facestore: an incremental face-embedding store with a retrain trigger.

The Python API (everything the CLI does, for a tagging app that wants it in-process):

    create_engine(url)            an engine with facestore's SQLite/PostgreSQL settings
    upgrade(engine)               install or update facestore's tables and triggers
    Store(engine)                 the embedding cache beside the app's `face` table
    BackboneSettings(...)         which backbone, weights file, device, batch size
    build_backbone(settings)      the backbone (vggface2 by default)
    Embedder(store, backbone)     embeds pending faces: run_pass(); embed_pending() once
    retrain(store, model_dir)     refit the classifier over cached vectors and publish
    ModelRepository(model_dir)    published versions: history(), rollback(), stage()
    Predictor.load(model_dir)     person_id + confidence (or unknown) for crops or vectors
    FacestoreError, ...           errors whose message says what to do

Names load on first use, so `import facestore` stays light.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("facestore")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

_EXPORTS = {
    "create_engine": "facestore.db",
    "upgrade": "facestore.db",
    "Store": "facestore.store",
    "BackboneSettings": "facestore.config",
    "build_backbone": "facestore.backbones",
    "Embedder": "facestore.embedding",
    "EmbedReport": "facestore.embedding",
    "embed_pending": "facestore.embedding",
    "retrain": "facestore.retrain",
    "RetrainReport": "facestore.retrain",
    "ModelRepository": "facestore.repository",
    "Predictor": "facestore.predict",
    "Prediction": "facestore.predict",
    "FacestoreError": "facestore.errors",
    "ConfigurationError": "facestore.errors",
    "DatabaseError": "facestore.errors",
    "ImageDecodeError": "facestore.errors",
    "ModelError": "facestore.errors",
    "SpaceMismatchError": "facestore.errors",
    "TrainingError": "facestore.errors",
    "WeightsError": "facestore.errors",
    "BusyError": "facestore.errors",
}

__all__ = [
    "__version__",
    "create_engine",
    "upgrade",
    "Store",
    "BackboneSettings",
    "build_backbone",
    "Embedder",
    "EmbedReport",
    "embed_pending",
    "retrain",
    "RetrainReport",
    "ModelRepository",
    "Predictor",
    "Prediction",
    "FacestoreError",
    "ConfigurationError",
    "DatabaseError",
    "ImageDecodeError",
    "ModelError",
    "SpaceMismatchError",
    "TrainingError",
    "WeightsError",
    "BusyError",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'facestore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from facestore.backbones import build_backbone
    from facestore.config import BackboneSettings
    from facestore.db import create_engine, upgrade
    from facestore.embedding import Embedder, EmbedReport, embed_pending
    from facestore.errors import (
        BusyError,
        ConfigurationError,
        DatabaseError,
        FacestoreError,
        ImageDecodeError,
        ModelError,
        SpaceMismatchError,
        TrainingError,
        WeightsError,
    )
    from facestore.predict import Prediction, Predictor
    from facestore.repository import ModelRepository
    from facestore.retrain import RetrainReport, retrain
    from facestore.store import Store
