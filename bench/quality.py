"""Face quality on real faces: degraded crops and non-faces, named or not, before and
after the quality gate.

From a folder of per-person folders (ORL), the people sorted by folder name: the first
KNOWN people (30 on ORL) are named on images 1-6 (imported, embedded, retrained with
facestore's own code: the model carries its open-set rule and its quality gate); their
images 7-10 are the known test faces; every image of the other people is a stranger's.
Each test crop is predicted as it is ("clean") and degraded:

- down16, down24: downscaled so that its shorter side is 16 or 24 px (kept that small,
  as an app stores a small face);
- blur3, blur5: Gaussian blur of radius 3 or 5;
- jpeg10: saved as a JPEG of quality 10;

and non-face crops are predicted too: the four corners of the known test images (a
third of each side: background, hair, shoulder) and random textures (noise, blocks,
stripes). For each kind it prints named right, named wrongly and left unknown, before
the gate (--min-quality 0) and after it (the default), the share gated and by which
signal, and, for the strangers' crops, the share rejected.

With --training, it also measures whether low-quality verified faces should train:
a third of the known people's training crops (images 1 and 4) is replaced by its
blur5 or down16 copy, and the model is trained (a) on all verified faces and (b)
without the verified faces its own gate finds low quality, as facestore does.

    python bench/quality.py ../shared/datasets/att_faces --backbone dlib
    python bench/quality.py ../shared/datasets/att_faces --backbone casia-webface \\
        --weights casia.pt --training
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402

import facestore.retrain  # noqa: E402
from bench.common import scratch  # noqa: E402
from facestore import db as database  # noqa: E402
from facestore.backbones import Backbone, build_backbone  # noqa: E402
from facestore.config import BackboneSettings  # noqa: E402
from facestore.embedding import embed_pending  # noqa: E402
from facestore.predict import Predictor  # noqa: E402
from facestore.retrain import retrain  # noqa: E402
from facestore.store import Store  # noqa: E402

TRAIN_IMAGES = 6
DEGRADED_TRAINING = (0, 3)  # image 1 and 4 of each known person, with --training


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "PNG")
    return out.getvalue()


def jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def downscale(image: Image.Image, side: int) -> Image.Image:
    width, height = image.size
    scale = side / min(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


DEGRADATIONS: dict[str, Callable[[Image.Image], bytes]] = {
    "clean": png,
    "down16": lambda image: png(downscale(image, 16)),
    "down24": lambda image: png(downscale(image, 24)),
    "blur3": lambda image: png(image.filter(ImageFilter.GaussianBlur(3))),
    "blur5": lambda image: png(image.filter(ImageFilter.GaussianBlur(5))),
    "jpeg10": lambda image: jpeg(image, 10),
}


def corners(image: Image.Image) -> list[Image.Image]:
    width, height = image.size
    side = max(1, min(width, height) // 3)
    boxes = [
        (0, 0, side, side),
        (width - side, 0, width, side),
        (0, height - side, side, height),
        (width - side, height - side, width, height),
    ]
    return [image.crop(box) for box in boxes]


def texture(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    width, height = size
    if seed % 3 == 0:  # noise
        pixels = rng.uniform(0, 255, (height, width, 3))
    elif seed % 3 == 1:  # blocks
        blocks = rng.uniform(0, 255, (height // 8 + 1, width // 8 + 1, 3))
        pixels = np.kron(blocks, np.ones((8, 8, 1)))[:height, :width]
    else:  # stripes
        x, y = np.linspace(0, 1, width)[None, :], np.linspace(0, 1, height)[:, None]
        wave = 127 + 100 * np.sin(2 * np.pi * (rng.uniform(2, 9) * x + rng.uniform(2, 9) * y))
        pixels = np.repeat(wave[:, :, None], 3, axis=2)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


class Memo:
    """The backbone's vectors, computed once per image (same name, config: same space)."""

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone
        self.name, self.config, self.dim = backbone.name, backbone.config, backbone.dim
        self.seen: dict[str, np.ndarray] = {}

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        keys = [hashlib.sha256(i.tobytes() + repr(i.size).encode()).hexdigest() for i in images]
        todo = [n for n, key in enumerate(keys) if key not in self.seen]
        if todo:
            vectors = self.backbone.embed_images([images[n] for n in todo])
            self.seen.update((keys[n], v) for n, v in zip(todo, vectors, strict=True))
        return np.asarray([self.seen[key] for key in keys], dtype=np.float32)


def people(root: Path) -> list[tuple[str, list[Path]]]:
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name))
    return [
        (folder.name, sorted(folder.iterdir(), key=lambda p: (len(p.stem), p.stem)))
        for folder in folders
    ]


def train(
    work: Path, name: str, training: list[tuple[str, bytes]], backbone: Memo, exclude_low: bool
) -> Predictor:
    """A model on these verified crops through facestore's own code, which leaves the
    low-quality verified faces out; without exclude_low, every one of them trains."""
    db = work / f"{name}.db"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE face (id INTEGER PRIMARY KEY, face_crop_blob BLOB, person_id TEXT, "
        "verified BOOLEAN NOT NULL DEFAULT 0)"
    )
    con.executemany(
        "INSERT INTO face (face_crop_blob, person_id, verified) VALUES (?, ?, 1)",
        [(blob, person) for person, blob in training],
    )
    con.commit()
    con.close()
    engine = database.create_engine(f"sqlite:///{db}")
    database.upgrade(engine)
    store = Store(engine)
    embed_pending(store, backbone)
    models = work / f"{name}-model"
    if exclude_low:
        report = retrain(store, models)
    else:
        everything = facestore.retrain.good_rows
        facestore.retrain.good_rows = lambda gate, rows: list(range(len(rows.face_ids)))
        try:
            report = retrain(store, models)
        finally:
            facestore.retrain.good_rows = everything
    print(f"  {name}: {report.low_quality_left_out} low-quality verified faces left out")
    return Predictor.load(models, backbone=backbone)


def outcome(predictions: list[Any], truth: list[str | None]) -> dict[str, float]:
    named = [p.person_id is not None for p in predictions]
    right = [n and str(p.person_id) == t for n, p, t in zip(named, predictions, truth, strict=True)]
    total = max(1, len(predictions))
    return {
        "faces": len(predictions),
        "right": round(100 * sum(right) / total, 1),
        "wrong": round(100 * (sum(named) - sum(right)) / total, 1),
        "unknown": round(100 * (len(named) - sum(named)) / total, 1),
    }


def measure(predictor: Predictor, crops: dict[str, list[tuple[bytes, str | None]]]) -> Any:
    result: dict[str, Any] = {}
    for kind, items in crops.items():
        labelled = [(str(i), blob) for i, (blob, _) in enumerate(items)]
        truth = [t for _, t in items]
        before = predictor.predict_crops(labelled, top_k=1, min_quality=0.0)
        after = predictor.predict_crops(labelled, top_k=1)
        result[kind] = {
            "before": outcome(before, truth),
            "after": outcome(after, truth),
            "gated": round(100 * sum(p.gated is not None for p in after) / max(1, len(after)), 1),
            "gated_by": dict(Counter(p.gated for p in after if p.gated).most_common()),
        }
    return result


def test_crops(
    everyone: list[tuple[str, list[Path]]], known: int
) -> dict[str, list[tuple[bytes, str | None]]]:
    """kind -> (crop bytes, the known person it shows or None)."""
    crops: dict[str, list[tuple[bytes, str | None]]] = {}
    for rank, (person, images) in enumerate(everyone):
        is_known = rank < known
        tests = images[TRAIN_IMAGES:] if is_known else images
        for path in tests:
            image = Image.open(path).convert("RGB")
            for kind, degrade in DEGRADATIONS.items():
                group = f"{kind} {'known' if is_known else 'stranger'}"
                crops.setdefault(group, []).append((degrade(image), person if is_known else None))
            if is_known:
                crops.setdefault("non-face corner", []).extend(
                    (png(c), None) for c in corners(image)
                )
    size = Image.open(everyone[0][1][0]).size
    crops["non-face texture"] = [(png(texture(seed, size)), None) for seed in range(60)]
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description="degraded crops and non-faces, gate or not")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--backbone", default="dlib")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--known", type=int, default=30, help="people named (images 1-6)")
    parser.add_argument("--training", action="store_true", help="the training decision too")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="leave the scratch directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = scratch("facestore-quality-", keep=args.keep)
    settings = BackboneSettings(name=args.backbone, weights=args.weights, device="cpu")
    backbone = Memo(build_backbone(settings))
    everyone = people(args.folder)
    clean_training = [
        (person, png(Image.open(path)))
        for person, images in everyone[: args.known]
        for path in images[:TRAIN_IMAGES]
    ]
    crops = test_crops(everyone, args.known)
    predictor = train(work, "clean", clean_training, backbone, exclude_low=True)
    gate = predictor.bundle.quality_gate
    report: dict[str, Any] = {
        "backbone": args.backbone,
        "gate": gate.describe() if gate else None,
        "open_set": predictor.bundle.metrics.get("open_set"),
        "results": measure(predictor, crops),
    }
    print(f"gate: {report['gate']}")
    heads = ("before: right/wrong/unknown", "after: right/wrong/unknown")
    print(f"{'kind':26s} {heads[0]:>28s} {heads[1]:>28s} gated (by)")
    for kind, row in report["results"].items():
        b, a = row["before"], row["after"]
        by = ", ".join(f"{reason} {count}" for reason, count in row["gated_by"].items())
        print(
            f"{kind:26s} {b['right']:8.1f} /{b['wrong']:5.1f} /{b['unknown']:5.1f}   "
            f"{a['right']:8.1f} /{a['wrong']:5.1f} /{a['unknown']:5.1f}   {row['gated']:5.1f}"
            + (f" ({by})" if by else "")
        )
    if args.training:
        degraded = []
        for n, (person, blob) in enumerate(clean_training):
            image = Image.open(io.BytesIO(blob))
            if n % TRAIN_IMAGES in DEGRADED_TRAINING:
                kind = "blur5" if (n // TRAIN_IMAGES) % 2 else "down16"
                blob = DEGRADATIONS[kind](image)
            degraded.append((person, blob))
        report["training"] = {}
        for name, exclude in (("all verified train", False), ("low quality left out", True)):
            model = train(work, name.replace(" ", "-"), degraded, backbone, exclude_low=exclude)
            figures = measure(model, {k: crops[k] for k in ("clean known", "clean stranger")})
            report["training"][name] = figures
            known, stranger = figures["clean known"]["after"], figures["clean stranger"]["after"]
            print(
                f"training, {name}: clean known {known['right']} right / {known['wrong']} "
                f"wrong; strangers rejected {stranger['unknown']}%"
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
