"""The GPU route's preprocessing: batched JPEG decode (nvjpeg on CUDA) and facenet's
letterbox + normalisation on tensors. The same functions run on CPU tensors, which is
how the tests check them against the PIL route (facestore.backbones.preprocess).

Which crops take this route is decided per crop (`gpu_route`): baseline or extended
YCbCr/greyscale JPEGs under 640 px on some side. PNG, WebP, progressive or CMYK JPEGs,
JPEGs the PIL route decodes at a reduced DCT scale (images.DRAFT_SIZE), and anything
the decoder refuses, take the CPU route in the same batch (facestore.decoding). Measured
on synthetic crops: the two routes' inputs differ by at most one grey level (1/128
after normalisation), so they are one embedding space.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from facestore.backbones.preprocess import IMAGE_SIZE
from facestore.images import DRAFT_SIZE
from facestore.quality import SHARPNESS_SIDE, THUMBNAIL_SIDE, ImageSignals, compression_quality

BASELINE_SOF = {0xC0, 0xC1}  # nvjpeg's batched decode: baseline / extended sequential
SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def gpu_route(blob: bytes) -> bool:
    """Whether the crop is a JPEG the batched GPU decoder takes (else: the CPU route)."""
    if not blob.startswith(b"\xff\xd8"):
        return False
    at = 2
    while at + 4 <= len(blob):
        if blob[at] != 0xFF:
            return False
        marker = blob[at + 1]
        length = int.from_bytes(blob[at + 2 : at + 4], "big")
        if marker in SOF_MARKERS:
            if at + 9 >= len(blob):
                return False
            height = int.from_bytes(blob[at + 5 : at + 7], "big")
            width = int.from_bytes(blob[at + 7 : at + 9], "big")
            components = blob[at + 9]
            # the PIL route decodes JPEGs of 640 px or more per side at a reduced scale
            # (images.DRAFT_SIZE): those take it, or the routes would not agree
            drafted = width >= 2 * DRAFT_SIZE[0] and height >= 2 * DRAFT_SIZE[1]
            return marker in BASELINE_SOF and components in (1, 3) and not drafted
        if marker == 0xDA:  # start of scan before any frame header: malformed
            return False
        at += 2 + length
    return False


def letterbox_tensor(image: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """uint8 CHW (1 or 3 channels) -> float CHW size x size, longer side scaled to size,
    centred on black; bilinear with antialiasing like PIL's, rounded to whole levels."""
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    _, height, width = image.shape
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    resized = F.interpolate(
        image[None].float(), size=(new_h, new_w), mode="bilinear", antialias=True
    )[0]
    canvas = torch.zeros((3, size, size), dtype=torch.float32, device=image.device)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[:, top : top + new_h, left : left + new_w] = resized.round().clamp(0, 255)
    return canvas


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """facenet-pytorch's fixed standardisation: (x - 127.5) / 128."""
    return (pixels - 127.5) / 128.0


class DeviceBatch(NamedTuple):
    prepared: torch.Tensor  # (n, 3, size, size)
    taken: list[int]  # the indices of the blobs its rows belong to
    refused: list[int]  # the indices left for the CPU route (not routed, or refused)
    signals: list[ImageSignals]  # quality signals of the taken crops, row by row


def tensor_signals(image: torch.Tensor, blob: bytes) -> ImageSignals:
    """facestore.quality.image_signals of a decoded uint8 CHW tensor, on its device, and
    of the bytes it was decoded from."""
    _, height, width = image.shape
    grey = image.float().mean(dim=0)[None, None]
    scale = SHARPNESS_SIDE / max(1, min(height, width))
    size = (max(3, round(height * scale)), max(3, round(width * scale)))
    pixels = F.interpolate(grey, size=size, mode="bilinear", antialias=True)[0, 0].round()
    laplacian = (
        4 * pixels[1:-1, 1:-1]
        - pixels[:-2, 1:-1]
        - pixels[2:, 1:-1]
        - pixels[1:-1, :-2]
        - pixels[1:-1, 2:]
    )
    sharpness = laplacian.var(unbiased=False) / (pixels.var(unbiased=False) + 1.0)
    side = (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    small = F.interpolate(image.float()[None], size=side, mode="bilinear", antialias=True)[0]
    thumbnail = small.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return ImageSignals(
        int(min(height, width)), float(sharpness), compression_quality(blob), thumbnail=thumbnail
    )


def decode_batch(blobs: Sequence[bytes], device: torch.device | str = "cpu") -> DeviceBatch:
    """Decode and prepare the crops that take the GPU route, on `device`."""
    from torchvision.io import ImageReadMode, decode_jpeg

    routed = [i for i, blob in enumerate(blobs) if gpu_route(blob)]
    fallback = [i for i in range(len(blobs)) if i not in set(routed)]
    prepared: list[torch.Tensor] = []
    taken: list[int] = []
    signals: list[ImageSignals] = []
    if routed:
        data = [torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in routed]
        images: list[torch.Tensor | None]
        try:
            images = list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:  # one refused crop fails the batch: decode one by one
            images = []
            for one in data:
                try:
                    images.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    images.append(None)
        for i, image in zip(routed, images, strict=True):
            if image is None:
                fallback.append(i)
            else:
                prepared.append(normalise(letterbox_tensor(image)))
                taken.append(i)
                signals.append(tensor_signals(image, blobs[i]))
    batch = (
        torch.stack(prepared)
        if prepared
        else torch.zeros((0, 3, IMAGE_SIZE, IMAGE_SIZE), device=device)
    )
    return DeviceBatch(batch, taken, sorted(fallback), signals)
