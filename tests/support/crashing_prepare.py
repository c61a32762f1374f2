"""A stand-in for facenet's input side whose preparation kills the decode worker process
on images of one size: how the tests make the image decoder crash."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from facestore.backbones.preprocess import IMAGE_SIZE, prepare

CRASH_SIZE = (37, 41)


def prepare_or_crash(image: Any) -> np.ndarray:
    if image.size == CRASH_SIZE:
        os._exit(3)  # what a segfault in a decoder looks like to the pool
    return prepare(image)


class FacenetInput:
    """ProcessPreparable: facenet's preparation, run in worker processes."""

    prepared_shape = (3, IMAGE_SIZE, IMAGE_SIZE)
    prepare_function = staticmethod(prepare)


class CrashingInput(FacenetInput):
    prepare_function = staticmethod(prepare_or_crash)
