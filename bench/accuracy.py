"""Open-set accuracy on ORL (or any folder of per-person folders) with a real backbone.

The issue's protocol, through facestore's own code at the defaults: import the
people's images 1-7 into a fresh SQLite database, embed them (default backbone
here: dlib), retrain with each classifier, then predict the held-out images 8-10
of the known people and every image of the strangers.

- "30 known": s1-s30 known, s31-s40 strangers (by sorted folder order: the first
  30 folders are known).
- "all known": every person known, images 8-10 held out.

For each classifier it prints: known faces named right / named wrongly / left
unknown, and strangers rejected, with the calibrated open-set rule (now) and with
the classifier's probability >= 0.2 (the previous behaviour, measured now).

    python bench/accuracy.py ../shared/datasets/att_faces [--backbone dlib] [--known 30]
    python bench/accuracy.py FOLDER --backbone casia-webface --weights casia.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from facestore import db as database  # noqa: E402
from facestore.backbones import Backbone, build_backbone  # noqa: E402
from facestore.config import BackboneSettings  # noqa: E402
from facestore.embedding import embed_pending  # noqa: E402
from facestore.images import decode_crop  # noqa: E402
from facestore.importer import crop_or_raw, import_folder  # noqa: E402
from facestore.predict import LEGACY_MIN_CONFIDENCE, Predictor  # noqa: E402
from facestore.retrain import retrain  # noqa: E402
from facestore.store import Store  # noqa: E402

CLASSIFIERS = ("auto", "svc", "lda", "logreg", "knn", "centroid")
TRAIN_IMAGES = 7


def images_of(person: Path) -> list[Path]:
    return sorted((p for p in person.iterdir() if p.is_file()), key=lambda p: (len(p.stem), p.stem))


def build_library(
    people: list[Path], backbone: Backbone, work: Path, name: str
) -> tuple[Store, float]:
    """A fresh SQLite database with images 1-7 of these people imported and embedded."""
    folder = work / name
    for person in people:
        (folder / person.name).mkdir(parents=True)
        for image in images_of(person)[:TRAIN_IMAGES]:
            (folder / person.name / image.name).symlink_to(image.resolve())
    engine = database.create_engine(f"sqlite:///{work / name}.db")
    import_folder(lambda: engine, folder)
    database.upgrade(engine)
    store = Store(engine)
    started = time.perf_counter()
    embed_pending(store, backbone)
    return store, time.perf_counter() - started


def embed_files(backbone: Backbone, paths: list[Path]) -> np.ndarray:
    images = [decode_crop(crop_or_raw(p)) for p in paths]
    return backbone.embed_images(images)


def outcome(predictor: Predictor, vectors: np.ndarray, truth: list[str | None]) -> dict:
    predictions = predictor.classify(vectors, [str(i) for i in range(len(vectors))])
    named = [p.person_id for p in predictions]
    known = [(n, t) for n, t in zip(named, truth, strict=True) if t is not None]
    strangers = [n for n, t in zip(named, truth, strict=True) if t is None]
    result = {
        "named_right": np.mean([n == t for n, t in known]) if known else None,
        "named_wrong": np.mean([n is not None and n != t for n, t in known]) if known else None,
        "unknown": np.mean([n is None for n, _ in known]) if known else None,
        "strangers_rejected": np.mean([n is None for n in strangers]) if strangers else None,
    }
    return {k: None if v is None else round(float(v), 4) for k, v in result.items()}


def run_protocol(
    label: str, known: list[Path], strangers: list[Path], backbone: Backbone, work: Path
) -> dict:
    store, embed_seconds = build_library(known, backbone, work, label)
    tests = [(p, person.name) for person in known for p in images_of(person)[TRAIN_IMAGES:]]
    tests += [(p, None) for person in strangers for p in images_of(person)]
    vectors = embed_files(backbone, [p for p, _ in tests])
    truth = [t for _, t in tests]
    rows = {}
    for name in CLASSIFIERS:
        model_dir = work / f"{label}-{name}-model"
        report = retrain(store, model_dir, name)
        predictor = Predictor.load(model_dir, backbone=backbone)
        legacy = Predictor(dataclasses.replace(predictor.bundle, open_set=None), backbone=backbone)
        rows[name] = {
            "classifier": report.classifier,
            "retrain_seconds": round(report.seconds, 2),
            "calibrated_rule": outcome(predictor, vectors, truth),
            f"probability_{LEGACY_MIN_CONFIDENCE}": outcome(legacy, vectors, truth),
        }
    return {
        "known_people": len(known),
        "strangers": len(strangers),
        "test_known_faces": sum(t is not None for t in truth),
        "test_stranger_faces": sum(t is None for t in truth),
        "embed_seconds": round(embed_seconds, 1),
        "classifiers": rows,
    }


def print_table(label: str, result: dict) -> None:
    print(
        f"\n{label}: {result['known_people']} known people, {result['strangers']} strangers; "
        f"{result['test_known_faces']} known / {result['test_stranger_faces']} stranger test faces"
    )
    print("classifier        rule           named_right  named_wrong  unknown  strangers_rejected")
    for row in result["classifiers"].values():
        for rule, key in (("calibrated", "calibrated_rule"), ("prob>=0.2", "probability_0.2")):
            r = row[key]
            rejected = "-" if r["strangers_rejected"] is None else f"{r['strangers_rejected']:.3f}"
            print(
                f"{row['classifier']:16s}  {rule:12s}  {r['named_right']:11.3f}  "
                f"{r['named_wrong']:11.3f}  {r['unknown']:7.3f}  {rejected:>18s}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder of per-person folders (ORL)")
    parser.add_argument("--backbone", default="dlib")
    parser.add_argument("--weights", type=Path, default=None, help="casia-webface: casia.pt")
    parser.add_argument("--known", type=int, default=30, help="people known in protocol 1")
    parser.add_argument("--json", dest="json_path", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    # the previous behaviour is measured with the rule removed: silence its warning
    logging.getLogger("facestore.predict").setLevel(logging.ERROR)
    people = sorted(
        (p for p in args.folder.iterdir() if p.is_dir()),
        key=lambda p: (len(p.name), p.name),
    )
    backbone = build_backbone(BackboneSettings(name=args.backbone, weights=args.weights))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = {
            f"{args.known} known": run_protocol(
                "known", people[: args.known], people[args.known :], backbone, work
            ),
            "all known": run_protocol("all", people, [], backbone, work),
        }
    for label, result in results.items():
        print_table(label, result)
    if args.json_path:
        args.json_path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
