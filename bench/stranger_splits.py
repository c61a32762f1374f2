"""The open-set rule's stranger rejection over many choices of who the strangers are.

One choice of 10 stranger people in 40 (bench/quality.py takes the last 10) is 100
faces of 10 people: whether 3% of them get a name or 4% is luck of the draw. This
takes SPLITS random choices of STRANGERS people from a folder of per-person folders
(ORL), names the others on images 1-6, calibrates the rule through facestore's own
`openset.calibrate` at each false-accept target, and reports, over the splits, the
strangers' faces given a name (at their nearest person) and the other images of the
named people named right and wrongly.

    python bench/stranger_splits.py ../shared/datasets/att_faces --backbone dlib
    python bench/stranger_splits.py FOLDER --backbone casia-webface --weights casia.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.quality import TRAIN_IMAGES, people  # noqa: E402
from facestore.backbones import build_backbone  # noqa: E402
from facestore.config import BackboneSettings  # noqa: E402
from facestore.openset import calibrate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="stranger rejection over random splits")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--backbone", default="dlib")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--splits", type=int, default=40)
    parser.add_argument("--strangers", type=int, default=10, help="stranger people per split")
    parser.add_argument("--far", type=float, nargs="+", default=[0.01, 0.02, 0.03, 0.05])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    backbone = build_backbone(
        BackboneSettings(name=args.backbone, weights=args.weights, device="cpu")
    )
    who, image, faces = [], [], []
    for rank, (_, paths) in enumerate(people(args.folder)):
        for index, path in enumerate(paths):
            who.append(rank)
            image.append(index + 1)
            faces.append(Image.open(path).convert("RGB"))
    vectors = np.asarray(backbone.embed_images(faces), dtype=np.float32)
    person, number = np.asarray(who), np.asarray(image)
    rng = np.random.default_rng(0)
    choices = [
        rng.choice(person.max() + 1, args.strangers, replace=False) for _ in range(args.splits)
    ]
    report: dict[str, dict[str, float]] = {}
    print(f"{args.backbone}: {args.splits} splits of {args.strangers} stranger people")
    print(
        f"{'target':>7s} {'strangers named':>16s} {'(worst split)':>14s} {'known right':>12s} "
        f"{'known wrong':>12s}"
    )
    for far in args.far:
        named, worst, right, wrong = [], 0.0, [], []
        for strangers in choices:
            stranger = np.isin(person, strangers)
            train = ~stranger & (number <= TRAIN_IMAGES)
            test = ~stranger & (number > TRAIN_IMAGES)
            ids = np.unique(person[train])
            rule = calibrate(vectors[train], np.searchsorted(ids, person[train]), len(ids), far)
            near = rule.distances(vectors[stranger]).min(axis=1)
            named.append(float(rule.accepts(near).mean()))
            worst = max(worst, named[-1])
            distances = rule.distances(vectors[test])
            accepted = rule.accepts(distances.min(axis=1))
            correct = ids[distances.argmin(axis=1)] == person[test]
            right.append(float((accepted & correct).mean()))
            wrong.append(float((accepted & ~correct).mean()))
        row = {
            "strangers_named": round(100 * float(np.mean(named)), 1),
            "worst_split": round(100 * worst, 1),
            "known_right": round(100 * float(np.mean(right)), 1),
            "known_wrong": round(100 * float(np.mean(wrong)), 1),
        }
        report[str(far)] = row
        print(
            f"{100 * far:6.0f}% {row['strangers_named']:15.1f}% {row['worst_split']:13.1f}% "
            f"{row['known_right']:11.1f}% {row['known_wrong']:11.1f}%"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
