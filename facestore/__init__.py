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
from typing import TYPE_CHECKING, Any

from facestore.version import __version__

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

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'facestore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # the same names for type checkers (`X as X`: re-exported)
    from facestore.backbones import build_backbone as build_backbone
    from facestore.config import BackboneSettings as BackboneSettings
    from facestore.db import create_engine as create_engine
    from facestore.db import upgrade as upgrade
    from facestore.embedding import Embedder as Embedder
    from facestore.embedding import EmbedReport as EmbedReport
    from facestore.embedding import embed_pending as embed_pending
    from facestore.errors import BusyError as BusyError
    from facestore.errors import ConfigurationError as ConfigurationError
    from facestore.errors import DatabaseError as DatabaseError
    from facestore.errors import FacestoreError as FacestoreError
    from facestore.errors import ImageDecodeError as ImageDecodeError
    from facestore.errors import ModelError as ModelError
    from facestore.errors import SpaceMismatchError as SpaceMismatchError
    from facestore.errors import TrainingError as TrainingError
    from facestore.errors import WeightsError as WeightsError
    from facestore.predict import Prediction as Prediction
    from facestore.predict import Predictor as Predictor
    from facestore.repository import ModelRepository as ModelRepository
    from facestore.retrain import RetrainReport as RetrainReport
    from facestore.retrain import retrain as retrain
    from facestore.store import Store as Store
