"""A /v1/predict request's face crops: the raw body (one image) or multipart parts (one
image per file part), checked against the service's limits, then decoded and measured
beside the model (in a thread). A bad request raises BadRequest with the HTTP status
and a message that says what is wrong."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

from PIL import Image

from facestore.errors import ImageDecodeError
from facestore.images import ALLOWED_FORMATS, MAX_PIXELS, claimed_format, decode_crop
from facestore.quality import ImageSignals, image_signals

MEGABYTE = 1024 * 1024
DRAIN_BYTES = 16 * MEGABYTE  # read and dropped past the limit before answering 413
RAW_TYPES = ("image/jpeg", "image/png", "image/webp", "application/octet-stream")


@dataclass(frozen=True)
class Limits:
    max_body: int = 10 * MEGABYTE  # bytes of one request body
    max_images: int = 32  # crops in one request
    max_pixels: int = MAX_PIXELS  # of one crop, read from its header before decoding
    timeout: float = 30.0  # seconds a request may take, queueing included


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Crop:
    label: str  # "image" for a raw body, else the part's file name (or field name)
    data: bytes


@dataclass(frozen=True)
class DecodedCrop:
    label: str
    image: Image.Image
    signals: ImageSignals


async def read_body(
    chunks: AsyncIterator[bytes], declared: str | None, limits: Limits, drain: int = DRAIN_BYTES
) -> bytes:
    """The body, refused (413) once it is larger than the limit. What comes past the limit
    is read and dropped (up to `drain` bytes more) before the answer, so that the client,
    still sending, reads the 413 rather than a broken connection (nginx's "lingering
    close"); memory holds the limit at most."""
    body = bytearray()
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size <= limits.max_body:
            body += chunk
        elif size > limits.max_body + drain:
            break
    if size > limits.max_body:
        shown = int(declared) if declared and declared.isdigit() else size
        raise BadRequest(413, _too_large(max(shown, size), limits))
    return bytes(body)


def _too_large(size: int, limits: Limits) -> str:
    return (
        f"The request body is {size} bytes, more than the limit of {limits.max_body} "
        "(serve --max-body-mb). Send fewer or smaller crops per request."
    )


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def raw_crops(body: bytes, content_type: str | None) -> list[Crop]:
    kind = media_type(content_type)
    if kind and kind not in RAW_TYPES:
        raise BadRequest(
            415,
            f"Unsupported Content-Type {kind!r}: send one image as image/jpeg, image/png "
            "or image/webp (or application/octet-stream), or images as multipart/form-data.",
        )
    if not body:
        raise BadRequest(400, "No image: the request body is empty. Send a face crop.")
    return [Crop("image", body)]


def check_count(crops: list[Crop], limits: Limits) -> list[Crop]:
    if not crops:
        raise BadRequest(400, "No image: the multipart body has no file part. Send a crop.")
    if len(crops) > limits.max_images:
        raise BadRequest(
            413,
            f"{len(crops)} images in one request, more than the limit of {limits.max_images} "
            "(serve --max-images). Split them over several requests.",
        )
    return crops


def decode(crop: Crop, limits: Limits) -> DecodedCrop:
    """The crop decoded to RGB with its quality signals; BadRequest if it is not an image
    this service reads (415), has more pixels than the limit (413) or is damaged (400)."""
    where = "" if crop.label == "image" else f" ({crop.label})"
    if not crop.data:
        raise BadRequest(400, f"No image{where}: the part is empty.")
    if claimed_format(crop.data) is None:
        raise BadRequest(
            415,
            f"Unsupported image type{where}: not a JPEG, PNG or WebP image. Convert it to "
            "one of those.",
        )
    too_large = (
        f"Image too large{where}: more than the limit of {limits.max_pixels} pixels (serve "
        "--max-pixels). Send the face crop, not the photo."
    )
    try:
        with Image.open(io.BytesIO(crop.data), formats=ALLOWED_FORMATS) as header:
            width, height = header.size
    except Image.DecompressionBombError:  # far beyond any limit: Pillow refuses it itself
        raise BadRequest(413, too_large) from None
    except Exception:  # noqa: BLE001 - a damaged header: decode_crop says how below
        width = height = 0
    if width * height > limits.max_pixels:
        raise BadRequest(413, too_large.replace("more than", f"{width}x{height} pixels, over"))
    try:
        image = decode_crop(crop.data)
    except ImageDecodeError as exc:
        status = 413 if str(exc).startswith("image too large") else 400
        raise BadRequest(status, f"Cannot read the image{where}: {str(exc).rstrip('.')}.") from None
    return DecodedCrop(crop.label, image, image_signals(image, crop.data))
