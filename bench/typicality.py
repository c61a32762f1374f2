"""Why the quality gate has no typicality floor: real faces gated, non-faces not.

The first quality gate (kind quality-floors/v1) also floored "typicality", the cosine
of a face's unit vector to the mean direction of the verified faces, at their 1%
quantile minus twice their interquartile range. This measures that rule on a folder
of per-person folders (ORL): the first N people named (images 1-7), every image of
every person judged, and the non-face crops of bench/quality.py (the corners of the
test images of the first 30 people, random textures). It prints, per N, the faces
below the floor (and whose), and the share of non-face crops below it.

    python bench/typicality.py ../shared/datasets/att_faces --backbone dlib
    python bench/typicality.py FOLDER --backbone casia-webface --weights casia.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.quality import corners, people, texture  # noqa: E402
from facestore.backbones import build_backbone  # noqa: E402
from facestore.config import BackboneSettings  # noqa: E402
from facestore.openset import unit_rows  # noqa: E402

NAMED_IMAGES = 7
QUANTILE, MARGIN, MIN_MARGIN = 0.01, 2.0, 0.01  # the v1 rule


def v1_floor(units: np.ndarray) -> tuple[np.ndarray, float]:
    """(mean direction, typicality floor) of the verified faces' unit vectors."""
    direction = unit_rows(units.mean(axis=0, keepdims=True))[0]
    cos = units @ direction
    low, q1, q3 = np.quantile(cos, [QUANTILE, 0.25, 0.75])
    return direction, float(low - max(MARGIN * (q3 - q1), MIN_MARGIN))


def main() -> None:
    parser = argparse.ArgumentParser(description="the v1 typicality floor on real faces")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--backbone", default="dlib")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--named", type=int, nargs="+", default=[5, 10, 20, 30])
    args = parser.parse_args()
    settings = BackboneSettings(name=args.backbone, weights=args.weights, device="cpu")
    backbone = build_backbone(settings)
    everyone = people(args.folder)
    names, images, faces = [], [], []
    for person, paths in everyone:
        for index, path in enumerate(paths):
            names.append(person)
            images.append(index + 1)
            faces.append(Image.open(path).convert("RGB"))
    units = unit_rows(backbone.embed_images(faces))
    who, image = np.asarray(names), np.asarray(images)
    corner_crops = [
        crop.convert("RGB")
        for _, paths in everyone[:30]
        for path in paths[6:]
        for crop in corners(Image.open(path).convert("RGB"))
    ]
    size = faces[0].size
    textures = [texture(seed, size).convert("RGB") for seed in range(60)]
    non_faces = {
        "corners": unit_rows(backbone.embed_images(corner_crops)),
        "textures": unit_rows(backbone.embed_images(textures)),
    }
    order = [person for person, _ in everyone]
    for named in args.named:
        verified = np.isin(who, order[:named]) & (image <= NAMED_IMAGES)
        direction, floor = v1_floor(units[verified])
        below = units @ direction < floor
        gated = {p: int(below[who == p].sum()) for p in order if below[who == p].any()}
        shares = {k: float(np.mean(v @ direction < floor)) for k, v in non_faces.items()}
        print(
            f"{args.backbone} named {named}: floor {floor:.3f}; faces below it "
            f"{int(below.sum())} {gated}; non-faces below it: corners "
            f"{shares['corners']:.0%}, textures {shares['textures']:.0%}; the least typical "
            f"non-face {min(float((v @ direction).min()) for v in non_faces.values()):.3f}, "
            f"the least typical face {float((units @ direction).min()):.3f}"
        )


if __name__ == "__main__":
    main()
