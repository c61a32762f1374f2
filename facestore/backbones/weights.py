"""Where facenet weights come from: the weights setting, the hub cache, a download."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from facestore.config import torch_home
from facestore.errors import WeightsError
from facestore.settings import BACKBONE, WEIGHTS, cite

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 30
RELEASES = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"


@dataclass(frozen=True)
class Checkpoint:
    filename: str
    num_classes: int

    @property
    def url(self) -> str:
        return RELEASES + self.filename


CHECKPOINTS = {
    "vggface2": Checkpoint("20180402-114759-vggface2.pt", 8631),
    "casia-webface": Checkpoint("20180408-102900-casia-webface.pt", 10575),
}


def hub_cache_path(variant: str) -> Path:
    return torch_home() / "checkpoints" / CHECKPOINTS[variant].filename


def resolve_weights(variant: str, explicit: Path | None, allow_download: bool = True) -> Path:
    checkpoint = CHECKPOINTS[variant]
    if explicit is not None:
        if explicit.is_file():
            return explicit
        raise WeightsError(
            f"Weights file {explicit} (from {cite(WEIGHTS)}) does not exist. "
            f"Give the path of {checkpoint.filename}."
        )
    cached = hub_cache_path(variant)
    if cached.is_file():
        return cached
    reason = "downloads are disabled"
    if allow_download:
        try:
            return _download(checkpoint.url, cached)
        except OSError as exc:
            reason = f"downloading {checkpoint.url} failed: {exc}"
    raise WeightsError(
        f"No weights for backbone {variant!r}: {checkpoint.filename} was not given with "
        f"{cite(WEIGHTS)}, is not in the torch hub cache at {cached}, and {reason}. Copy "
        f"{checkpoint.filename} to {cached}, or give its path with {cite(WEIGHTS, 'PATH')}. "
        f"Offline, the dlib backbone needs no download: {cite(BACKBONE, 'dlib')} "
        "(pip install 'facestore[dlib]')."
    )


def _download(url: str, target: Path) -> Path:
    log.info("Downloading %s to %s", url, target)
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
