"""`facestore clusters`: a group near a known person says whom it may be; ids absorbed
by a merge are listed. Vectors chosen by the test (KeyedBackbone): the geometry is
the point here, not the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facestore import db as database
from facestore.artifacts import load_bundle
from facestore.embedding import embed_pending
from facestore.retrain import retrain
from facestore.store import Store
from tests.support.helpers import KeyedBackbone, keyed_crop, make_app_db, sqlite_exec
from tests.support.types import Cli

DIM = 24


def at_distance(centroid: np.ndarray, direction: np.ndarray, distance: float) -> np.ndarray:
    """A unit vector between the centroid's direction and `direction` whose distance to
    the centroid (the open-set rule's: |u - c|) is `distance`."""
    low, high = 0.0, 10.0
    for _ in range(60):
        t = (low + high) / 2
        u = centroid / np.linalg.norm(centroid) + t * direction
        u /= np.linalg.norm(u)
        low, high = (t, high) if np.linalg.norm(u - centroid) < distance else (low, t)
    return u.astype(np.float32)


def test_a_group_near_a_known_person_may_be_that_person(tmp_path: Path, cli: Cli) -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, DIM))
    vectors = {1 + i: centres[i // 6] + 0.3 * rng.normal(size=DIM) for i in range(24)}
    db = make_app_db(tmp_path / "app.db", people=0)
    database.upgrade(database.create_engine(f"sqlite:///{db}"))
    for key in vectors:  # four known people, six faces each
        sqlite_exec(
            db,
            "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, ?, 1)",
            keyed_crop(key),
            (key - 1) // 6,
        )
    store = Store(database.create_engine(f"sqlite:///{db}"))
    embed_pending(store, KeyedBackbone(vectors))
    retrain(store, tmp_path / "model", "centroid")
    rule = load_bundle(tmp_path / "model").open_set
    assert rule is not None
    # unknown faces: three just beyond person 2's threshold (x1.2), three far from everyone
    orthogonal = rng.normal(size=DIM)
    near = at_distance(rule.centroids[2], orthogonal, 1.2 * rule.threshold)
    vectors.update({100 + i: near + 0.001 * rng.normal(size=DIM) for i in range(3)})
    vectors.update({200 + i: -centres.sum(0) + 0.001 * rng.normal(size=DIM) for i in range(3)})
    for key in (100, 101, 102, 200, 201, 202):
        sqlite_exec(
            db,
            "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) "
            "VALUES (1, ?, NULL, 0)",
            keyed_crop(key),
        )
    embed_pending(store, KeyedBackbone(vectors), verified=False)

    args = ("--db", db, "--model-dir", tmp_path / "model", "clusters")
    rebuilt = json.loads(cli(*args, "--rebuild", "--cluster-distance", "0.01", "--json").stdout)
    clusters = rebuilt["clusters"]
    assert sorted(c["size"] for c in clusters) == [3, 3]
    may_be = [c["may_be"] for c in clusters if c["may_be"]]
    assert len(may_be) == 1 and may_be[0]["person_id"] == 2
    assert may_be[0]["distance"] > may_be[0]["threshold"]  # not named: a hint only
    assert may_be[0]["distance"] <= 1.5 * may_be[0]["threshold"]
    assert all(c["absorbed"] == [] for c in clusters)
    text = cli(*args).stdout
    assert text.count("may be person 2: distance") == 1

    # with no model, nothing is guessed
    alone = json.loads(
        cli(*args[:-3], "--model-dir", tmp_path / "none", "clusters", "--json").stdout
    )
    assert [c["may_be"] for c in alone] == [None, None]
