"""Unknown faces on real faces, the way an operator meets them: named people, new people
and strangers seen once arriving a few at a time while the daemon runs; then the same
database re-clustered whole (`facestore clusters --rebuild`).

From a folder of per-person folders (ORL), the people sorted by folder name:

- the first NAMED people (20 on ORL): images 1-7 verified, trained before anything
  arrives; their other images arrive unverified ("known faces": suggested right?);
- the next NEW people (10 on ORL): every image arrives unverified;
- the rest are strangers seen once: one image each arrives (rotation r takes the r-th
  image of each).

For each rotation, the unverified faces arrive in a shuffled order in batches of 5-20,
and `Daemon.reconcile(scan=False)` runs after each batch, as when the app's writes
wake it (a batch every 5 s of the daemon's clock); then one timer pass, an interval
later. The backbone is real; its vectors are memoised by crop,
so that the model runs once per image whatever the rotations.

Reported for the daemon (after the last batch, and after the timer pass) and for a
rebuild of the same database: purity (of the faces in groups, the share in a group
whose majority is their own person), pairwise precision, recall and F and BCubed F
over the unknown faces (those the model named nobody; a face in no group is alone),
coverage (the new people's faces that got no name: the share in a group), groups
per new person, strangers seen once in a group, known faces suggested right and
wrongly, and new people's faces or strangers given a name.

    python bench/unknown_faces.py ../shared/datasets/att_faces --backbone dlib
    python bench/unknown_faces.py ../shared/datasets/att_faces \\
        --backbone casia-webface --weights casia.pt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.common import scratch  # noqa: E402
from facestore import db as database  # noqa: E402
from facestore.backbones import Backbone, build_backbone, space_of  # noqa: E402
from facestore.config import BackboneSettings  # noqa: E402
from facestore.daemon.loop import Daemon  # noqa: E402
from facestore.daemon.options import WatchOptions  # noqa: E402
from facestore.embedding import embed_pending  # noqa: E402
from facestore.group_scores import group_scores, purity  # noqa: E402
from facestore.retrain import retrain  # noqa: E402
from facestore.store import Store  # noqa: E402
from facestore.unknown_groups import cluster_params, recluster  # noqa: E402

TRAIN_IMAGES = 7


class Memo:
    """The backbone's vectors, computed once per image (same name, config: same space)."""

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone
        self.name, self.config, self.dim = backbone.name, backbone.config, backbone.dim
        self.seen: dict[str, np.ndarray] = {}

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        keys = [hashlib.sha256(image.tobytes()).hexdigest() for image in images]
        todo = [i for i, k in enumerate(keys) if k not in self.seen]
        if todo:
            vectors = self.backbone.embed_images([images[i] for i in todo])
            self.seen.update((keys[i], v) for i, v in zip(todo, vectors, strict=True))
        return np.asarray([self.seen[k] for k in keys], dtype=np.float32)


class Clock:
    """The daemon's clock: the app writes a batch every `--every` seconds, the timer's
    pass comes an interval after the last (the bench itself runs faster than that)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Face:
    path: Path
    person: str
    kind: str  # "train", "known", "new", "stranger"


def plan(root: Path, named: int, new: int, rotation: int) -> list[Face]:
    people = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name))
    faces = []
    for rank, folder in enumerate(people):
        images = sorted(folder.iterdir(), key=lambda p: (len(p.stem), p.stem))
        if rank < named:
            faces += [Face(p, folder.name, "train") for p in images[:TRAIN_IMAGES]]
            faces += [Face(p, folder.name, "known") for p in images[TRAIN_IMAGES:]]
        elif rank < named + new:
            faces += [Face(p, folder.name, "new") for p in images]
        else:
            faces.append(Face(images[(rotation - 1) % len(images)], folder.name, "stranger"))
    return faces


def png(path: Path) -> bytes:
    import io

    out = io.BytesIO()
    Image.open(path).convert("RGB").save(out, "PNG")
    return out.getvalue()


def insert(db: Path, faces: list[Face], verified: bool) -> list[int]:
    con = sqlite3.connect(db)
    ids = []
    for face in faces:
        cursor = con.execute(
            "INSERT INTO face (face_crop_blob, person_id, verified) VALUES (?, ?, ?)",
            (png(face.path), face.person if verified else None, int(verified)),
        )
        ids.append(int(cursor.lastrowid or 0))
    con.commit()
    con.close()
    return ids


def figures(db: Path, truth: dict[int, Face]) -> dict[str, Any]:
    con = sqlite3.connect(db)
    suggested = dict(con.execute("SELECT face_id, person_id FROM face_suggestion"))
    group_of = dict(con.execute("SELECT face_id, cluster_id FROM face_cluster_member"))
    con.close()

    def of(kind: str) -> list[int]:
        return [f for f, face in truth.items() if face.kind == kind]

    known, new, strangers = of("known"), of("new"), of("stranger")
    unknown = sorted(f for f in truth if truth[f].kind != "train" and f not in suggested)
    scores = group_scores(
        np.array([group_of.get(f, -1) for f in unknown]), [truth[f].person for f in unknown]
    )
    in_groups = sorted(f for f in truth if f in group_of)
    labels = np.array([group_of[f] for f in in_groups])
    unnamed_new = [f for f in new if f not in suggested]
    new_groups = {group_of[f] for f in new if f in group_of}
    new_people = {truth[f].person for f in new}
    return {
        "purity": round(purity(labels, [truth[f].person for f in in_groups]), 3),
        **{f"pairwise_{k}" if k != "bcubed_f" else k: v for k, v in scores.as_json().items()},
        "coverage": round(sum(f in group_of for f in unnamed_new) / max(1, len(unnamed_new)), 3),
        "groups": len(set(labels.tolist())),
        "groups_with_new_people": len(new_groups),
        "groups_per_new_person": round(len(new_groups) / len(new_people), 2),
        "strangers_in_a_group": sum(f in group_of for f in strangers),
        "strangers": len(strangers),
        "known_suggested_right": sum(str(suggested.get(f)) == truth[f].person for f in known),
        "known_suggested_wrong": sum(
            f in suggested and str(suggested[f]) != truth[f].person for f in known
        ),
        "known": len(known),
        "new_named": sum(f in suggested for f in new),
        "new": len(new),
        "strangers_named": sum(f in suggested for f in strangers),
    }


def run(root: Path, work: Path, backbone: Memo, rotation: int, args: argparse.Namespace) -> Any:
    faces = plan(root, args.named, args.new, rotation)
    db = work / f"rotation-{rotation}.db"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE face (id INTEGER PRIMARY KEY, face_crop_blob BLOB, person_id TEXT, "
        "verified BOOLEAN NOT NULL DEFAULT 0)"
    )
    con.close()
    engine = database.create_engine(f"sqlite:///{db}")
    database.upgrade(engine)
    store = Store(engine)
    insert(db, [f for f in faces if f.kind == "train"], verified=True)
    embed_pending(store, backbone)
    models = work / f"model-{rotation}"
    retrain(store, models)

    clock = Clock()
    options = WatchOptions(retrain=False)
    daemon = Daemon(store, models, options, backbone, clock=clock)
    daemon.reconcile()  # as `facestore watch` starts: a timer pass
    rng = np.random.default_rng(rotation)
    arriving = [f for f in faces if f.kind != "train"]
    order = rng.permutation(len(arriving))
    truth: dict[int, Face] = {}
    started, at = time.perf_counter(), 0
    while at < len(order):
        batch = [arriving[i] for i in order[at : at + int(rng.integers(5, 21))]]
        at += len(batch)
        truth.update(zip(insert(db, batch, verified=False), batch, strict=True))
        clock.now += args.every
        daemon.reconcile(scan=False)  # woken by the app's write
    passes = {"after_last_batch": figures(db, truth)}
    clock.now += options.interval
    daemon.reconcile()  # the timer's pass: nothing new arrives
    passes["daemon"] = figures(db, truth)
    passes["daemon"]["full_passes"] = daemon.grouper.full_passes
    passes["daemon"]["seconds"] = round(time.perf_counter() - started, 1)
    space = store.spaces.active()
    assert space is not None
    params, source = cluster_params(store, space)
    recluster(store, space, params, source)
    passes["rebuild"] = figures(db, truth)
    passes["params"] = {"distance": round(params.distance, 4), "link": params.link, "from": source}
    daemon.close()
    return passes


def summary(results: list[dict[str, Any]], key: str) -> dict[str, Any]:
    rows = [r[key] for r in results]
    total = Counter[str]()
    for row in rows:
        total.update({k: v for k, v in row.items() if isinstance(v, int)})
    mean = {
        k: round(float(np.mean([r[k] for r in rows])), 3)
        for k in (
            "purity",
            "coverage",
            "pairwise_precision",
            "pairwise_recall",
            "pairwise_f",
            "bcubed_f",
        )
    }
    return {
        **mean,
        "groups_per_new_person": round(
            float(np.mean([r["groups_per_new_person"] for r in rows])), 2
        ),
        "strangers_in_a_group": f"{total['strangers_in_a_group']}/{total['strangers']}",
        "known_suggested_right": round(total["known_suggested_right"] / total["known"], 3),
        "known_suggested_wrong": round(total["known_suggested_wrong"] / total["known"], 3),
        "new_named": round(total["new_named"] / total["new"], 3),
        "strangers_named": f"{total['strangers_named']}/{total['strangers']}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="unknown faces through the daemon, on real faces")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--backbone", default="dlib")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--named", type=int, default=20, help="people named (images 1-7)")
    parser.add_argument("--new", type=int, default=10, help="new people (every image)")
    parser.add_argument("--rotations", type=int, default=10, help="strangers' image choices")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between batches")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--keep", action="store_true", help="leave the scratch directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = scratch("facestore-unknown-", keep=args.keep)
    settings = BackboneSettings(name=args.backbone, weights=args.weights, device="cpu")
    backbone = Memo(build_backbone(settings))
    results = []
    for rotation in range(1, args.rotations + 1):
        result = run(args.folder, work, backbone, rotation, args)
        results.append(result)
        d, r = result["daemon"], result["rebuild"]
        print(
            f"rotation {rotation}: {result['params']['from']}, cut {result['params']['distance']}"
            f" | daemon purity {d['purity']} coverage {d['coverage']} groups {d['groups']}"
            f" | rebuild purity {r['purity']} coverage {r['coverage']} groups {r['groups']}",
            flush=True,
        )
    report = {
        "backbone": args.backbone,
        "space": space_of(backbone.backbone).label,
        "named": args.named,
        "new_people": args.new,
        "rotations": args.rotations,
        **{key: summary(results, key) for key in ("after_last_batch", "daemon", "rebuild")},
    }
    if args.json:
        args.json.write_text(json.dumps({"summary": report, "runs": results}, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
