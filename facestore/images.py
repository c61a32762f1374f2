"""Crop bytes -> RGB PIL image. Pure: no I/O beyond the bytes given.

Accepted: JPEG, PNG and WebP, in modes L, LA, P (with or without transparency),
RGB, RGBA, CMYK and 16-bit greyscale. Transparent pixels are composited onto
black, the same colour the preprocessing pads with.

Refused (raising ImageDecodeError) before any pixel is allocated: empty input,
data that is not one of the three formats, and headers that claim more than
MAX_PIXELS pixels (a decompression bomb). Truncated or corrupt data is refused
when the pixels are read.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from facestore.errors import ImageDecodeError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
# A face crop is small; a whole 5000x5000 photo still passes. Far beyond that is a bomb.
MAX_PIXELS = 25_000_000
# Large JPEGs are decoded at a reduced DCT scale, never below this size per side.
DRAFT_SIZE = (320, 320)


def decode_crop(blob: bytes | memoryview | None) -> Image.Image:
    """Decode one crop to an RGB image, or raise ImageDecodeError saying why."""
    if blob is None or len(blob) == 0:
        raise ImageDecodeError("empty crop (0 bytes)")
    data = bytes(blob)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        claimed = claimed_format(data)
        if claimed is not None:
            raise ImageDecodeError(f"corrupt {claimed} image: its header cannot be read") from None
        raise ImageDecodeError("not a JPEG, PNG or WebP image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image too large: {exc}") from None
    except Exception as exc:  # Pillow raises many types for malformed headers
        claimed = claimed_format(data)
        if claimed is not None:
            raise ImageDecodeError(f"corrupt or truncated {claimed} image: {exc}") from None
        raise ImageDecodeError(f"unreadable image header: {exc}") from None

    width, height = image.size
    if width < 1 or height < 1:
        raise ImageDecodeError(f"image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(
            f"image too large: {width}x{height} pixels, more than the limit of {MAX_PIXELS}"
        )
    if image.format == "JPEG":
        image.draft("RGB" if image.mode != "L" else "L", DRAFT_SIZE)
    try:
        image.load()
        return to_rgb(image)
    except Exception as exc:  # truncated or corrupt data, or a mode Pillow cannot convert
        raise ImageDecodeError(f"corrupt or truncated {image.format} image: {exc}") from None


def claimed_format(data: bytes) -> str | None:
    """The allowed format whose signature the bytes start with, if any."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any supported mode to 8-bit RGB."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_depth_to_rgb(image)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float64)
    if image.mode != "F":
        pixels = pixels / 257.0  # 16-bit range 0..65535 onto 0..255
    grey = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def crop_bytes(path: Path, check: bool = True) -> bytes:
    """The file's bytes if it is an allowed format that decodes, a PNG re-encoding if
    Pillow reads it otherwise; ImageDecodeError says why not. check=False: an allowed
    format is returned undecoded (its caller decodes it anyway)."""
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format in ALLOWED_FORMATS:
                if check:
                    decode_crop(data)  # what the embed pass will do: refuse it now
                return data
            image.load()
            out = io.BytesIO()
            image.save(out, "PNG")
            return out.getvalue()
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        if claimed_format(data) is None:
            raise ImageDecodeError("not an image Pillow can read") from None
        raise ImageDecodeError(decode_reason(data)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        if claimed_format(data) is None:
            raise ImageDecodeError(f"unreadable image: {exc}") from None
        raise ImageDecodeError(decode_reason(data)) from None


def decode_reason(data: bytes) -> str:
    try:
        decode_crop(data)
    except ImageDecodeError as exc:
        return str(exc)
    return "unreadable image"  # pragma: no cover - Pillow refused it above
