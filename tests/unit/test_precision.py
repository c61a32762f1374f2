"""--precision: part of the embedding space; channels_last and compile are not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facestore.backbones import build_backbone, space_of
from facestore.config import BackboneSettings, resolve_backbone
from facestore.errors import ConfigurationError
from tests.support.helpers import face_image


def facenet(weights: Path, **options: object) -> object:
    return build_backbone(BackboneSettings(weights=weights, device="cpu", **options))  # type: ignore[arg-type]


def test_precision_is_part_of_the_space_and_layout_is_not(weights_file: Path) -> None:
    fp32 = facenet(weights_file)
    bf16 = facenet(weights_file, precision="bfloat16")
    fp32_channels_last = facenet(weights_file, channels_last=True)
    assert space_of(fp32).config_hash != space_of(bf16).config_hash  # type: ignore[arg-type]
    assert space_of(fp32).config_hash == space_of(fp32_channels_last).config_hash  # type: ignore[arg-type]
    assert space_of(bf16).config["precision"] == "bfloat16"  # type: ignore[arg-type]


def test_reduced_precision_vectors_stay_close_to_float32(weights_file: Path) -> None:
    images = [face_image(p, s) for p in range(3) for s in range(2)]
    fp32 = facenet(weights_file).embed_images(images)  # type: ignore[attr-defined]
    bf16 = facenet(weights_file, precision="bfloat16").embed_images(images)  # type: ignore[attr-defined]
    layout = facenet(weights_file, channels_last=True).embed_images(images)  # type: ignore[attr-defined]
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.99
    np.testing.assert_allclose(layout, fp32, atol=1e-4)


def test_an_unknown_precision_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="Unknown precision 'float8'"):
        resolve_backbone({}, {"FACESTORE_PRECISION": "float8"})
    assert resolve_backbone({}, {}).precision == "float32"


def test_dlib_refuses_reduced_precision() -> None:
    with pytest.raises(ConfigurationError, match="float32 only"):
        build_backbone(BackboneSettings(name="dlib", precision="float16"))
