"""Issue 16's targets on real faces, through facestore's own code: clusters of unknown
faces and rejections.

Imports a folder of per-person folders (ORL) into a fresh SQLite database, embeds
with a real backbone (default dlib) and then:

1. "none named": every face unverified, no model -> `grouping.recluster` at the
   backbone's defaults: purity, coverage, clusters against people;
2. "half named": the first half of the people (sorted by folder, s1-s20 on ORL),
   images 1-7, verified; the rest unverified -> retrain, suggestions
   (`Suggester`), clusters: how the named people's other faces split between
   suggestions and clusters, and purity/coverage of the unnamed people's faces;
3. "rejections": the top suggestion of 20 suggested faces is rejected
   (face_rejection); then suggestions again, 3 retrains (seeds 1-3), and a
   reembed into another space (random vggface2-format weights: another real
   backbone code path) with a model trained there; after each it counts the
   rejected suggestions that came back (target: 0).

    python bench/unknown_faces.py ../shared/datasets/att_faces [--backbone dlib]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench.common import random_weights  # noqa: E402
from facestore import db as database  # noqa: E402
from facestore.backbones import build_backbone, space_of  # noqa: E402
from facestore.clustering import purity  # noqa: E402
from facestore.config import BackboneSettings  # noqa: E402
from facestore.daemon import Suggester  # noqa: E402
from facestore.embedding import embed_pending  # noqa: E402
from facestore.grouping import cluster_params, recluster  # noqa: E402
from facestore.importer import import_folder  # noqa: E402
from facestore.predict import Predictor  # noqa: E402
from facestore.reembed import activate, build_space  # noqa: E402
from facestore.retrain import retrain  # noqa: E402
from facestore.store import Store  # noqa: E402

REJECTED = 20


def library(root: Path, work: Path, name: str) -> tuple[sa.Engine, Store]:
    engine = database.create_engine(f"sqlite:///{work / name}.db", must_exist=False)
    import_folder(engine, root)
    database.upgrade(engine)
    return engine, Store(engine)


def run_sql(engine: sa.Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.begin() as conn:
        result = conn.execute(sa.text(sql), params)
        return [tuple(r) for r in result] if result.returns_rows else []


def person_of(engine: sa.Engine) -> dict[int, str]:
    rows = run_sql(engine, "SELECT id, person_id FROM face")  # import: the folder's name
    return {int(i): str(n) for i, n in rows}


def cluster_figures(engine: sa.Engine, faces: set[int]) -> dict[str, Any]:
    """Purity, coverage and clusters of these faces (the truth: their person)."""
    truth = person_of(engine)
    members = dict(run_sql(engine, "SELECT face_id, cluster_id FROM face_cluster_member"))
    ordered = sorted(faces)
    labels = np.array([members.get(f, -1) for f in ordered])
    people = [truth[f] for f in ordered]
    inside = labels >= 0
    return {
        "faces": len(ordered),
        "people": len(set(people)),
        "purity": round(purity(labels, people), 3),
        "coverage": round(float(inside.mean()), 3) if len(ordered) else 0.0,
        "clusters": len(set(labels[inside].tolist())),
        "clusters_per_person": round(
            float(
                np.mean(
                    [
                        len(set(labels[(np.array(people) == p) & inside].tolist()))
                        for p in set(people)
                    ]
                )
            ),
            2,
        ),
    }


def none_named(root: Path, work: Path, backbone: Any) -> dict[str, Any]:
    engine, store = library(root, work, "none-named")
    run_sql(engine, "UPDATE face SET verified = 0")
    embed_pending(store, backbone, verified=False)
    space = store.spaces.active()
    assert space is not None
    params, source = cluster_params(store, space)
    report = recluster(store, space, params, source)
    ids = {int(i) for (i,) in run_sql(engine, "SELECT id FROM face")}
    return {"recluster": report.as_json(), **cluster_figures(engine, ids)}


def half_named(root: Path, work: Path, backbone: Any) -> tuple[dict[str, Any], Store, Path]:
    engine, store = library(root, work, "half-named")
    names = sorted(
        {str(n) for (n,) in run_sql(engine, "SELECT DISTINCT person_id FROM face")},
        key=lambda n: (len(n), n),
    )
    named = set(names[: len(names) // 2])
    truth = person_of(engine)
    order: dict[str, list[int]] = {}
    for face_id in sorted(truth):
        order.setdefault(truth[face_id], []).append(face_id)
    train = {f for p in named for f in order[p][:7]}
    run_sql(engine, "UPDATE face SET verified = 0")
    for face_id in train:
        run_sql(engine, "UPDATE face SET verified = 1 WHERE id = :f", f=face_id)
    embed_pending(store, backbone)
    embed_pending(store, backbone, verified=False)
    models = work / "half-named-model"
    retrain(store, models)
    space = store.spaces.active()
    assert space is not None
    predictor = Predictor.load(models)
    Suggester(store, None).suggest(predictor, space.config_hash, replace_all=True)
    params, source = cluster_params(store, space)
    report = recluster(store, space, params, source)
    suggested = dict(run_sql(engine, "SELECT face_id, person_id FROM face_suggestion"))
    members = {f for (f,) in run_sql(engine, "SELECT face_id FROM face_cluster_member")}
    named_rest = {f for p in named for f in order[p][7:]}
    unnamed = {f for p in names if p not in named for f in order[p]}
    right = sum(1 for f in named_rest if str(suggested.get(f)) == truth[f])
    figures = {
        "recluster": report.as_json(),
        "named_people_other_faces": {
            "faces": len(named_rest),
            "suggested": sum(1 for f in named_rest if f in suggested),
            "suggested_right": right,
            "in_clusters": len(named_rest & members),
        },
        "unnamed_people": {
            **cluster_figures(engine, unnamed),
            "suggested_someone": sum(1 for f in unnamed if f in suggested),
        },
    }
    return figures, store, models


def rejections(store: Store, models: Path, work: Path) -> dict[str, Any]:
    engine = store.engine
    top = run_sql(engine, "SELECT face_id, person_id FROM face_suggestion ORDER BY face_id")
    chosen = top[:REJECTED]
    for face_id, person_id in chosen:
        run_sql(
            engine,
            "INSERT INTO face_rejection (face_id, person_id) VALUES (:f, :p)",
            f=face_id,
            p=person_id,
        )
    rejected = set(chosen)

    def came_back() -> int:
        now = set(run_sql(engine, "SELECT face_id, person_id FROM face_suggestion"))
        return len(now & rejected)

    space = store.spaces.active()
    assert space is not None
    suggester = Suggester(store, None)
    suggester.suggest(Predictor.load(models), space.config_hash)
    counts: dict[str, Any] = {"rejected": len(chosen), "after_rejecting": came_back()}
    for seed in (1, 2, 3):
        retrain(store, models, seed=seed)
        suggester.suggest(Predictor.load(models), space.config_hash, replace_all=True)
        counts[f"after_retrain_{seed}"] = came_back()
    other = build_backbone(
        BackboneSettings(weights=random_weights(work / "other.pt"), device="cpu")
    )
    new_space, _, _ = build_space(store, other)
    activate(store, new_space, models)
    embed_pending(store, other, verified=False)
    suggester.suggest(Predictor.load(models), space_of(other).config_hash, replace_all=True)
    counts["after_reembed"] = came_back()
    counts["suggestions_after_reembed"] = len(run_sql(engine, "SELECT 1 FROM face_suggestion"))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description="issue 16's targets on real faces")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--backbone", default="dlib")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="facestore-unknown-"))
    backbone = build_backbone(BackboneSettings(name=args.backbone))
    result: dict[str, Any] = {"backbone": args.backbone}
    result["none_named"] = none_named(args.folder, work, backbone)
    result["half_named"], store, models = half_named(args.folder, work, backbone)
    result["rejections"] = rejections(store, models, work)
    print(json.dumps(result, indent=2))
    n = result["none_named"]
    print(
        f"\nnone named: purity {n['purity']}, coverage {n['coverage']}, "
        f"{n['clusters']} clusters for {n['people']} people"
    )
    h = result["half_named"]["unnamed_people"]
    print(
        f"half named, unnamed people: purity {h['purity']}, coverage {h['coverage']}, "
        f"{h['clusters']} clusters for {h['people']} people"
    )
    back = {k: v for k, v in result["rejections"].items() if k.startswith("after")}
    print(f"rejected suggestions that came back: {back}")


if __name__ == "__main__":
    main()
