"""The GPU route's preprocessing, run on CPU tensors: route choice per crop, fallback,
and agreement with the PIL route (inputs and facenet vectors)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facestore.backbones import build_backbone
from facestore.backbones.preprocess import prepare
from facestore.backbones.tensor_preprocess import decode_batch, gpu_route
from facestore.config import BackboneSettings
from facestore.images import decode_crop
from tests.support.helpers import CORRUPT_BLOBS, encode, face_image


def jpeg(image: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, **options)
    return out.getvalue()


def test_the_route_is_chosen_per_crop() -> None:
    face = face_image(0, 0).convert("RGB")
    assert gpu_route(jpeg(face))
    assert gpu_route(jpeg(face.convert("L")))
    assert not gpu_route(jpeg(face, progressive=True))
    # the PIL route decodes these at a reduced DCT scale: they take it
    assert not gpu_route(jpeg(face.resize((640, 700))))
    assert gpu_route(jpeg(face.resize((639, 1400))))
    assert not gpu_route(jpeg(face.convert("CMYK")))
    assert not gpu_route(encode(face, "PNG"))
    assert not gpu_route(encode(face, "WEBP"))
    assert not gpu_route(CORRUPT_BLOBS["truncated-jpeg"][:20])
    assert not gpu_route(b"")


def test_other_crops_fall_back_in_the_same_batch() -> None:
    face = face_image(1, 2).convert("RGB")
    blobs = [jpeg(face), encode(face, "PNG"), jpeg(face, progressive=True), jpeg(face)]
    batch, taken, fallback, _ = decode_batch(blobs)
    assert taken == [0, 3] and fallback == [1, 2]
    assert batch.shape == (2, 3, 160, 160) and batch.dtype == torch.float32


def test_a_crop_the_decoder_refuses_falls_back() -> None:
    good = jpeg(face_image(2, 0).convert("RGB"))
    cut = good[: good.index(b"\xff\xda") + 4]  # headers of a baseline JPEG, then nothing
    assert gpu_route(cut)  # routed by its header, refused by the decoder
    batch, taken, fallback, _ = decode_batch([good, cut, good])
    assert taken == [0, 2] and fallback == [1] and len(batch) == 2


def test_the_tensor_route_matches_the_pil_route(weights_file: Path) -> None:
    rng = np.random.default_rng(3)
    images = [face_image(p, s).convert("RGB") for p in range(3) for s in range(2)]
    images.append(Image.fromarray(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)))
    blobs = [jpeg(image) for image in images]
    batch, taken, fallback, _ = decode_batch(blobs)
    assert fallback == [] and taken == list(range(len(blobs)))
    reference = np.stack([prepare(decode_crop(blob)) for blob in blobs])
    assert np.abs(batch.numpy() - reference).max() <= 1 / 128 + 1e-6  # one grey level
    backbone = build_backbone(BackboneSettings(weights=weights_file, device="cpu"))
    tensor_vectors = backbone.embed_prepared(batch.numpy())  # type: ignore[attr-defined]
    pil_vectors = backbone.embed_prepared(reference)  # type: ignore[attr-defined]
    cosine = (tensor_vectors * pil_vectors).sum(1) / (
        np.linalg.norm(tensor_vectors, axis=1) * np.linalg.norm(pil_vectors, axis=1)
    )
    assert cosine.min() > 0.9999


pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def test_the_device_route_measures_the_same_quality_signals() -> None:
    from PIL import ImageFilter

    from facestore.quality import image_signals

    faces = [face_image(4, 1).convert("RGB"), face_image(5, 2).convert("RGB").resize((30, 36))]
    faces.append(faces[0].filter(ImageFilter.GaussianBlur(3)))
    blobs = [jpeg(face) for face in faces]
    _, taken, _, signals = decode_batch(blobs)
    assert taken == [0, 1, 2]
    for blob, measured in zip(blobs, signals, strict=True):
        reference = image_signals(decode_crop(blob), blob)
        assert measured.side == reference.side
        assert measured.sharpness == pytest.approx(reference.sharpness, rel=0.1)
        assert measured.jpeg_quality == reference.jpeg_quality > 0
        assert measured.thumbnail is not None and reference.thumbnail is not None
        difference = measured.thumbnail.astype(np.int16) - reference.thumbnail.astype(np.int16)
        assert measured.thumbnail.shape == (48, 48, 3) and np.abs(difference).mean() < 4
