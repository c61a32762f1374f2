"""How to pick --min-confidence: named-correctly vs. strangers-rejected per threshold.

Reads the vectors of a facestore database's active space, holds out a share of
the people as strangers (never trained on), trains on the others' faces minus one
held-out face each, and prints, per threshold, how many held-out known faces are
named correctly and how many strangers are answered "unknown".

    python bench/threshold.py --db app.db [--classifier svc] [--strangers 0.25]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from facestore import db as database
from facestore.store import Store
from facestore.training import build_dataset, classifier_factory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--classifier", default="svc")
    parser.add_argument("--strangers", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)

    store = Store(database.create_engine(database_url(args.db)))
    space = store.active_space()
    assert space is not None, "embed first"
    rows = store.training_rows(space.config_hash)
    data = build_dataset(rows.face_ids, rows.person_ids, rows.vectors)
    rng = np.random.default_rng(args.seed)
    people = rng.permutation(len(data.classes))
    n_strangers = int(len(people) * args.strangers)
    strangers = set(people[:n_strangers].tolist())

    known_idx = np.flatnonzero([label not in strangers for label in data.labels])
    stranger_idx = np.flatnonzero([label in strangers for label in data.labels])
    test_known = []
    for label in set(data.labels[known_idx].tolist()):
        members = known_idx[data.labels[known_idx] == label]
        test_known.append(rng.choice(members))
    train_idx = np.setdiff1d(known_idx, test_known)
    model = classifier_factory(args.classifier)(42, len(train_idx))
    model.fit(data.vectors[train_idx], data.labels[train_idx])

    def best(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        proba = model.predict_proba(data.vectors[idx])
        return model.classes_[proba.argmax(1)], proba.max(1)

    known_pred, known_conf = best(np.asarray(test_known))
    correct = known_pred == data.labels[test_known]
    _, stranger_conf = best(stranger_idx)
    print(
        f"space {space.label}; classifier {args.classifier}; "
        f"{len(data.classes) - n_strangers} known people, {n_strangers} strangers"
    )
    print(
        f"known faces: {len(test_known)}, top-1 accuracy {correct.mean():.3f}; "
        f"stranger faces: {len(stranger_idx)}"
    )
    print("threshold  known_named_correctly  known_named_wrongly  strangers_unknown")
    for threshold in (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        named = known_conf >= threshold
        print(
            f"{threshold:9.2f}  {np.mean(named & correct):21.3f}  "
            f"{np.mean(named & ~correct):19.3f}  {np.mean(stranger_conf < threshold):17.3f}"
        )


def database_url(value: str) -> str:
    from facestore.config import database_url as to_url

    return to_url(value)


if __name__ == "__main__":
    main()
