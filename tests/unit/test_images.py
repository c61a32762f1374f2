from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from facestore.errors import ImageDecodeError
from facestore.images import MAX_PIXELS, decode_crop
from tests.support.helpers import CORRUPT_BLOBS, encode, face_image, png_bomb

grey = face_image(1, 1)


def sixteen_bit() -> Image.Image:
    ramp = np.linspace(0, 65535, 92 * 112).reshape(112, 92).astype(np.uint16)
    return Image.fromarray(ramp)


GOOD = {
    "jpeg-L": encode(grey, "JPEG"),
    "jpeg-RGB": encode(grey.convert("RGB"), "JPEG"),
    "jpeg-CMYK": encode(grey.convert("CMYK"), "JPEG"),
    "png-L": encode(grey, "PNG"),
    "png-LA": encode(grey.convert("LA"), "PNG"),
    "png-RGBA": encode(grey.convert("RGBA"), "PNG"),
    "png-P": encode(grey.convert("P"), "PNG"),
    "png-P-transparency": encode(grey.convert("P"), "PNG", transparency=0),
    "png-16bit": encode(sixteen_bit(), "PNG"),
    "webp": encode(grey.convert("RGB"), "WEBP"),
    "png-1x1": encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_accepted_formats_decode_to_rgb(name: str) -> None:
    image = decode_crop(GOOD[name])
    assert image.mode == "RGB"
    assert image.size[0] >= 1 and image.size[1] >= 1


def test_sixteen_bit_keeps_its_range() -> None:
    pixels = np.asarray(decode_crop(GOOD["png-16bit"]))
    assert pixels.min() == 0 and pixels.max() == 255  # scaled, not clipped to white


def test_transparent_pixels_become_black() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 255, 255, 0))
    assert np.asarray(decode_crop(encode(rgba, "PNG"))).max() == 0


def test_cmyk_matches_rgb_roughly() -> None:
    rgb = np.asarray(decode_crop(GOOD["jpeg-RGB"]), dtype=float)
    cmyk = np.asarray(decode_crop(GOOD["jpeg-CMYK"]), dtype=float)
    assert np.abs(rgb - cmyk).mean() < 10


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty", "empty crop (0 bytes)"),
        ("random", "not a JPEG, PNG or WebP image"),
        ("text", "not a JPEG, PNG or WebP image"),
        ("truncated-jpeg", "corrupt or truncated JPEG image"),
        ("bomb", "image too large"),
    ],
)
def test_rejected_blobs_say_why(name: str, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=re.escape(message)):
        decode_crop(CORRUPT_BLOBS[name])


@pytest.mark.parametrize(
    "blob",
    [
        encode(face_image(0, 0))[:3] + bytes(range(256)) * 3,  # JPEG signature, garbage after
        encode(face_image(0, 0))[:200],  # cut inside the header
        encode(face_image(0, 0), "PNG")[:8] + b"\0" * 64,
    ],
)
def test_a_corrupt_jpeg_or_png_is_called_corrupt_not_another_format(blob: bytes) -> None:
    with pytest.raises(ImageDecodeError, match="corrupt") as raised:
        decode_crop(blob)
    assert "not a JPEG" not in str(raised.value)


def test_other_formats_are_refused() -> None:
    with pytest.raises(ImageDecodeError, match="not a JPEG, PNG or WebP"):
        decode_crop(encode(grey, "BMP"))


def test_bomb_is_refused_without_allocating_pixels() -> None:
    tracemalloc.start()
    with pytest.raises(ImageDecodeError, match="image too large"):
        decode_crop(png_bomb())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5_000_000  # the pixels would be 2.5 GB


def test_pixel_limit_is_exact() -> None:
    # At the limit the header passes; the fake body then fails as a truncated image.
    with pytest.raises(ImageDecodeError, match="corrupt or truncated PNG"):
        decode_crop(png_bomb(5000, 5000))
    side = int(MAX_PIXELS**0.5) + 1
    with pytest.raises(ImageDecodeError, match="image too large"):
        decode_crop(png_bomb(side, side))


def test_large_jpeg_decodes_at_reduced_scale() -> None:
    photo = Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (4000, 4000, 3), dtype=np.uint8)
    )
    image = decode_crop(encode(photo, "JPEG", quality=50))
    assert image.mode == "RGB" and max(image.size) <= 1000
