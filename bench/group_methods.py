"""Grouping methods compared on real faces, without the daemon: the vectors of a
folder of per-person folders (ORL) are computed once by a real backbone; then, over
random splits, some people are named (their faces calibrate the cut and the link,
as the library's verified faces do) and the faces of the others, plus strangers seen
once, are grouped by each method. Reported per method (mean over the splits): purity,
pairwise precision, recall and F, BCubed F, and the share of strangers seen once put
in a group.

    python bench/group_methods.py ../shared/datasets/att_faces --backbone dlib
    python bench/group_methods.py ../shared/datasets/att_faces \\
        --backbone casia-webface --weights casia.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from facestore.backbones import build_backbone  # noqa: E402
from facestore.config import BackboneSettings  # noqa: E402
from facestore.group_scores import group_scores, purity  # noqa: E402
from facestore.grouping import (  # noqa: E402
    ClusterParams,
    calibrate,
    group,
    unit_rows,
)
from facestore.openset import impostor_quantile  # noqa: E402

# (unknown faces' vectors, the calibrated parameters, the named faces' vectors and people)
Method = Callable[[np.ndarray, ClusterParams, np.ndarray, list[str]], np.ndarray]


def embed_folder(root: Path, backbone: str, weights: Path | None) -> tuple[np.ndarray, list[str]]:
    built = build_backbone(BackboneSettings(name=backbone, weights=weights, device="cpu"))
    people = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name))
    paths, names = [], []
    for folder in people:
        for image in sorted(folder.iterdir(), key=lambda p: (len(p.stem), p.stem)):
            paths.append(image)
            names.append(folder.name)
    vectors = []
    for start in range(0, len(paths), 32):
        images = [Image.open(p).convert("RGB") for p in paths[start : start + 32]]
        vectors.append(built.embed_images(images))
    return np.concatenate(vectors).astype(np.float32), names


def subset_centroid_distances(
    vectors: np.ndarray, names: list[str], size: int, rng: np.random.Generator, draws: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Distances between the centroids of random disjoint subsets of `size` faces: of the
    same person (genuine) and of two people (impostor)."""
    units = unit_rows(vectors)
    people = sorted(set(names))
    index = {p: np.flatnonzero(np.asarray(names) == p) for p in people}
    centres, owners = [], []
    for _ in range(draws):
        for person in people:
            faces = index[person]
            if len(faces) < 2 * size:
                continue
            chosen = rng.permutation(faces)
            for part in (chosen[:size], chosen[size : 2 * size]):
                centres.append(units[part].sum(axis=0))
                owners.append((person, _))
    if not centres:
        return np.zeros(0), np.zeros(0)
    c = unit_rows(np.asarray(centres))
    similarity = c @ c.T
    who = np.asarray([o[0] for o in owners])
    draw = np.asarray([o[1] for o in owners])
    upper = np.triu(np.ones_like(similarity, dtype=bool), k=1)
    same = (who[:, None] == who[None, :]) & (draw[:, None] == draw[None, :])
    different = who[:, None] != who[None, :]
    return 1 - similarity[upper & same], 1 - similarity[upper & different]


def merge_groups(vectors: np.ndarray, labels: np.ndarray, cut: float) -> np.ndarray:
    """Groups whose centroids lie within cut, merged (average linkage over centroids)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    ids = sorted(set(labels[labels >= 0].tolist()))
    if len(ids) < 2:
        return labels
    units = unit_rows(vectors)
    centres = unit_rows(np.array([units[labels == g].sum(axis=0) for g in ids]))
    merged = fcluster(
        linkage(centres, method="average", metric="cosine"), t=cut, criterion="distance"
    )
    out = labels.copy()
    for g, m in zip(ids, merged, strict=True):
        out[labels == g] = 100000 + int(m)
    return out


def two_level(share: float) -> Method:
    def method(v: np.ndarray, p: ClusterParams, train: np.ndarray, people: list[str]) -> np.ndarray:
        labels = group(v, p)
        genuine, impostor = subset_centroid_distances(train, people, 3, np.random.default_rng(0))
        if not len(impostor):
            return labels
        cut, _ = impostor_quantile(impostor, share)
        return merge_groups(v, labels, cut)

    return method


def rank_order_distances(units: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate rank-order distance (Otto, Wang and Jain, TPAMI 2018) of each face and
    each of its k nearest: (a, b, D). d(a, b) counts the faces a ranks before b that
    are absent from b's list; D = (d(a, b) + d(b, a)) / min(rank of b for a, of a for b)."""
    sim = units @ units.T
    np.fill_diagonal(sim, -np.inf)
    k = min(k, len(units) - 1)
    lists = np.argsort(-sim, axis=1)[:, :k]
    rank = np.full((len(units), len(units)), k + 1, dtype=np.int64)  # absent: beyond
    rank[np.arange(len(units))[:, None], lists] = np.arange(1, k + 1)[None, :]
    a_list, b_list, d_list = [], [], []
    for a in range(len(units)):
        for position, b in enumerate(lists[a], start=1):
            o_ab = position
            o_ba = rank[b, a]
            d_ab = int((rank[b, lists[a][:o_ab]] > k).sum())
            d_ba = int((rank[a, lists[b][: min(o_ba, k)]] > k).sum())
            a_list.append(a)
            b_list.append(int(b))
            d_list.append((d_ab + d_ba) / min(o_ab, o_ba))
    return np.array(a_list), np.array(b_list), np.array(d_list)


def rank_order(k: int, share: float) -> Method:
    """Faces linked where their rank-order distance is below the threshold that only
    `share` of the named faces' impostor pairs (among their own lists) fall below, and
    their cosine distance within the cut at 1% of impostors; groups are the connected
    pieces of at least 3 faces."""

    def method(v: np.ndarray, p: ClusterParams, train: np.ndarray, people: list[str]) -> np.ndarray:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        names = np.asarray(people)
        ta, tb, td = rank_order_distances(unit_rows(train), k)
        impostor = td[names[ta] != names[tb]]
        threshold = float(np.quantile(impostor, share)) if len(impostor) else 0.0
        units = unit_rows(v)
        a, b, d = rank_order_distances(units, k)
        cosine = 1 - np.einsum("ij,ij->i", units[a], units[b])
        keep = (d <= threshold) & (cosine <= p.distance * 1.5)
        graph = coo_matrix((np.ones(int(keep.sum())), (a[keep], b[keep])), shape=(len(v), len(v)))
        _, labels = connected_components(graph, directed=False)
        sizes = np.bincount(labels)
        return np.where(sizes[labels] >= p.min_size, labels, -1)

    return method


def variant(cut_share: float, link_share: float | None) -> Method:
    """The exact method with the cut at another impostor share, and the link at another
    genuine share (None: no link rule)."""

    def method(v: np.ndarray, p: ClusterParams, train: np.ndarray, people: list[str]) -> np.ndarray:
        units = unit_rows(train)
        names = np.asarray(people)
        sim = units @ units.T
        upper = np.triu(np.ones_like(sim, dtype=bool), k=1)
        cut, _ = impostor_quantile(1 - sim[upper & (names[:, None] != names[None, :])], cut_share)
        link = None
        if link_share is not None:
            same = names[:, None] == names[None, :]
            np.fill_diagonal(same, False)
            own = np.where(same, sim, -np.inf).max(axis=1)
            link = float(np.quantile(1 - own[np.isfinite(own)], link_share))
        return group(v, ClusterParams(cut, p.min_size, link))

    return method


def methods() -> dict[str, Method]:
    return {
        "now: the defaults (cut 0.1%, link 95%)": lambda v, p, t, n: group(v, p),
        "before: cut 0.1%, link 90%": variant(0.001, 0.9),
        "cut 0.1%, no link rule": variant(0.001, None),
        "cut 0.1%, link 99%": variant(0.001, 0.99),
        "cut 0.3%, link 90%": variant(0.003, 0.9),
        "cut 0.3%, link 95%": variant(0.003, 0.95),
        "cut 0.3%, link 99%": variant(0.003, 0.99),
        "cut 0.3%, no link": variant(0.003, None),
        "cut 0.5%, link 95%": variant(0.005, 0.95),
        "cut 1%, link 90%": variant(0.01, 0.9),
        "rank-order k 10, impostor 1%": rank_order(10, 0.01),
        "groups merged at subset impostor 0.1%": two_level(0.001),
        "groups merged at subset impostor 1%": two_level(0.01),
    }


def evaluate(
    vectors: np.ndarray, names: list[str], named: int, strangers: int, splits: int
) -> dict[str, dict[str, float]]:
    people = sorted(set(names))
    by_person = {p: np.flatnonzero(np.asarray(names) == p) for p in people}
    results: dict[str, list[dict[str, float]]] = {m: [] for m in methods()}
    for split in range(splits):
        rng = np.random.default_rng(split)
        order = rng.permutation(people).tolist()
        known, rest = order[:named], order[named:]
        seen_once, new = rest[:strangers], rest[strangers:]
        train = np.concatenate([by_person[p] for p in known])
        calibrated = calibrate(vectors[train], [names[i] for i in train])
        assert calibrated is not None
        params = ClusterParams(calibrated.distance, 3, calibrated.link)
        unknown = np.concatenate(
            [by_person[p] for p in new] + [rng.choice(by_person[p], 1) for p in seen_once]
        )
        truth = [names[i] for i in unknown]
        once = np.isin(np.asarray(truth), seen_once)
        for name, method in methods().items():
            labels = method(vectors[unknown], params, vectors[train], [names[i] for i in train])
            scores = group_scores(labels, truth)
            inside = labels >= 0
            results[name].append(
                {
                    "purity": purity(
                        labels[inside], [t for t, i in zip(truth, inside, strict=True) if i]
                    ),
                    "pairwise_precision": scores.precision,
                    "pairwise_recall": scores.recall,
                    "pairwise_f": scores.f,
                    "bcubed_f": scores.bcubed_f,
                    "once_grouped": float(inside[once].mean()) if once.any() else 0.0,
                }
            )
    return {
        name: {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]}
        for name, rows in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--backbone", default="dlib")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--named", type=int, default=15, help="people whose faces calibrate")
    parser.add_argument("--strangers", type=int, default=10, help="people seen once")
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=None, help="vectors .npz to reuse")
    args = parser.parse_args()
    if args.cache and args.cache.exists():
        saved = np.load(args.cache)
        vectors, names = saved["vectors"], saved["names"].tolist()
    else:
        vectors, names = embed_folder(args.folder, args.backbone, args.weights)
        if args.cache:
            np.savez(args.cache, vectors=vectors, names=np.asarray(names))
    report = evaluate(vectors, names, args.named, args.strangers, args.splits)
    print(json.dumps({"backbone": args.backbone, "named": args.named, **report}, indent=2))


if __name__ == "__main__":
    main()
