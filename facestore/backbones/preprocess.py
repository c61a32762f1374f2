"""Pure preprocessing for facenet: RGB image -> float32 CHW array in [-1, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

IMAGE_SIZE = 160
PREPROCESS_VERSION = 1
NORMALISATION = "(x - 127.5) / 128"  # facenet-pytorch's fixed_image_standardization


def letterbox(image: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """Resize so the longer side is `size`, keeping the aspect ratio; pad with black."""
    width, height = image.size
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = image.resize(new_size, Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (size, size))
    canvas.paste(resized, ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
    return canvas


def prepare(image: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    pixels = np.asarray(letterbox(image.convert("RGB"), size), dtype=np.float32)
    return ((pixels - 127.5) / 128.0).transpose(2, 0, 1)


def prepare_batch(images: Sequence[Image.Image], size: int = IMAGE_SIZE) -> np.ndarray:
    if not images:
        return np.zeros((0, 3, size, size), dtype=np.float32)
    return np.stack([prepare(image, size) for image in images])
