"""dlib's ResNet face descriptor (128-d), with the model files of `face_recognition_models`.

Installed with the extra `facestore[dlib]` (PyPI `dlib-bin` + `face-recognition-models`).
That wheel ships its model files, so this backbone works on a machine with no network.

Preprocessing for app crops (the crop is already a face): dlib's 5-point landmark
predictor runs on the whole crop as the face box, `get_face_chip` cuts an aligned
150 px chip with padding 0.25, and the ResNet embeds it with no jitter. The vectors
are not L2-normalised (their norms vary around 1.2-1.5); nothing downstream assumes
they are.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facestore.backbones import PreparedBase
from facestore.backbones.weights import file_sha256
from facestore.config import BackboneSettings
from facestore.errors import BackboneError, ConfigurationError
from facestore.settings import PRECISION, WEIGHTS, cite

log = logging.getLogger(__name__)

EMBEDDING_DIM = 128
CHIP_SIZE = 150
CHIP_PADDING = 0.25
JITTERS = 0
PREPROCESS_VERSION = 1
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
INSTALL_HINT = (
    "Install the extra: pip install 'facestore[dlib]' (dlib-bin, face-recognition-models)."
)


def model_files_dir() -> Path:
    """The `models/` folder of face_recognition_models, found without importing it.

    Its __init__ imports pkg_resources, which setuptools 81 removed; find_spec
    locates a package without running its __init__.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise BackboneError(f"The dlib backbone needs face_recognition_models. {INSTALL_HINT}")
    folder = Path(locations[0]) / "models"
    for name in (LANDMARKS_FILE, RESNET_FILE):
        if not (folder / name).is_file():
            raise BackboneError(
                f"face_recognition_models is installed but {folder / name} is missing. "
                "Reinstall it: pip install --force-reinstall face-recognition-models."
            )
    return folder


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise BackboneError(f"The dlib backbone needs dlib ({exc}). {INSTALL_HINT}") from exc
    return dlib


def aligned_chip(dlib: Any, landmarks: Any, image: Image.Image) -> np.ndarray:
    """5-point landmarks inside the whole crop, then an aligned 150 px chip (uint8 HWC)."""
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    height, width = pixels.shape[:2]
    shape = landmarks(pixels, dlib.rectangle(0, 0, width - 1, height - 1))
    chip = dlib.get_face_chip(pixels, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    return np.asarray(chip, dtype=np.uint8)


class DlibBackbone(PreparedBase):
    """Implements the Backbone protocol with dlib_face_recognition_resnet_model_v1."""

    name = "dlib"
    dim = EMBEDDING_DIM

    def __init__(self, models: Path | None = None) -> None:
        folder = models or model_files_dir()
        self._dlib = _import_dlib()
        self._landmarks = self._dlib.shape_predictor(str(folder / LANDMARKS_FILE))
        self._resnet = self._dlib.face_recognition_model_v1(str(folder / RESNET_FILE))
        self.config: Mapping[str, Any] = {
            "resnet_sha256": file_sha256(folder / RESNET_FILE),
            "landmarks_sha256": file_sha256(folder / LANDMARKS_FILE),
            "landmarks": "5-point, whole crop as the face box",
            "chip_size": CHIP_SIZE,
            "chip_padding": CHIP_PADDING,
            "jitters": JITTERS,
            "preprocess_version": PREPROCESS_VERSION,
            "precision": "float32",
        }
        log.info("Loaded dlib ResNet face model from %s", folder)

    @classmethod
    def from_settings(cls, settings: BackboneSettings) -> DlibBackbone:
        if settings.weights is not None:
            log.warning(
                "Ignoring the weights given (%s, %s): the dlib backbone uses the model "
                "files of face_recognition_models.",
                WEIGHTS.for_command_line(),
                settings.weights,
            )
        if settings.precision != "float32":
            raise ConfigurationError(
                f"The dlib backbone computes in float32 only, not {settings.precision}. "
                f"Leave {cite(PRECISION)} out for the dlib backbone."
            )
        return cls()

    @property
    def device_info(self) -> dict[str, Any]:
        return {"device": "cpu", "dlib": str(self._dlib.__version__)}

    def prepare(self, image: Image.Image) -> np.ndarray:
        """The aligned chip of one crop; runs in the pipeline's decode workers."""
        return aligned_chip(self._dlib, self._landmarks, image)

    def embed_prepared(self, chips: np.ndarray) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = [np.ascontiguousarray(chip) for chip in chips]
        vectors = self._resnet.compute_face_descriptor(batch, JITTERS)
        return np.asarray([np.asarray(v) for v in vectors], dtype=np.float32)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_prepared(np.stack([self.prepare(image) for image in images]))
