"""Grouping unknown faces: candidate algorithms on real embeddings, and their cost at scale.

Measurement for issue 16 (clusters of unknown faces), before the feature is built:
every face of a folder of per-person folders (ORL) is embedded with a real backbone
(default dlib) and clustered as if nobody were named. For each algorithm and
setting it prints purity (of the faces put in clusters, the share in a cluster
whose majority is their own person), coverage (the share put in some cluster) and
the number of clusters against the number of people; the "two-stage" runs repeat
over 3 face orders (it is order-dependent) and report the mean and the worst purity.
Then it times the fast algorithms on 20,000 synthetic unit vectors (timing only:
synthetic vectors never choose a default).

    python bench/cluster.py ../shared/datasets/att_faces [--backbone dlib] [--no-scale]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from scipy.cluster.hierarchy import fcluster, linkage  # noqa: E402
from sklearn.cluster import DBSCAN, HDBSCAN  # noqa: E402

from facestore.backbones import build_backbone  # noqa: E402
from facestore.config import BackboneSettings  # noqa: E402
from facestore.grouping import leaders  # noqa: E402
from facestore.images import decode_crop  # noqa: E402
from facestore.importer import crop_or_raw  # noqa: E402

Labels = np.ndarray


def embed_folder(root: Path, backbone_name: str) -> tuple[np.ndarray, np.ndarray]:
    backbone = build_backbone(BackboneSettings(name=backbone_name))
    vectors, people = [], []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in person.iterdir() if f.is_file())
        images = [decode_crop(crop_or_raw(f)) for f in files]
        vectors.append(backbone.embed_images(images))
        people += [person.name] * len(files)
    matrix = np.concatenate(vectors).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True), np.array(people)


def score(labels: Labels, people: np.ndarray) -> tuple[float, float, int]:
    """(purity, coverage, clusters); label -1 is "in no cluster"."""
    clustered = labels >= 0
    if not clustered.any():
        return 0.0, 0.0, 0
    ids = set(labels[clustered].tolist())
    majority = sum(Counter(people[labels == c].tolist()).most_common(1)[0][1] for c in ids)
    return majority / int(clustered.sum()), float(clustered.mean()), len(ids)


def at_least(labels: Labels, min_size: int) -> Labels:
    counts = Counter(labels.tolist())
    return np.array([c if c >= 0 and counts[c] >= min_size else -1 for c in labels.tolist()])


def two_stage(vectors: np.ndarray, radius: float, distance: float) -> Labels:
    """Leader micro-clusters, then average linkage over their centroids, cut at distance."""
    micro = leaders(vectors, radius)
    sums = np.zeros((micro.max() + 1, vectors.shape[1]))
    np.add.at(sums, micro, vectors)
    if len(sums) == 1:
        return np.zeros(len(vectors), int)
    centroids = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    tree = linkage(centroids, method="average", metric="cosine")
    return (fcluster(tree, t=distance, criterion="distance") - 1)[micro]


def average_linkage(vectors: np.ndarray, distance: float) -> Labels:
    tree = linkage(vectors, method="average", metric="cosine")
    return fcluster(tree, t=distance, criterion="distance") - 1


def report(name: str, runs: list[tuple[float, float, int]]) -> None:
    purity = [r[0] for r in runs]
    line = (
        f"{name:<44} purity {np.mean(purity):.3f}"
        + (f" (worst {min(purity):.3f})" if len(runs) > 1 else "")
        + f"  coverage {np.mean([r[1] for r in runs]):.3f}"
        + f"  clusters {np.mean([r[2] for r in runs]):.0f}"
    )
    print(line, flush=True)


def quality(vectors: np.ndarray, people: np.ndarray) -> None:
    print(f"{len(vectors)} faces of {len(set(people.tolist()))} people, none named")
    for eps in (0.04, 0.05, 0.06):
        for min_size in (2, 3):
            labels = DBSCAN(eps=eps, min_samples=min_size, metric="cosine").fit_predict(vectors)
            report(f"dbscan eps {eps} min {min_size}", [score(labels, people)])
    for min_size in (3, 4, 5):
        labels = HDBSCAN(min_cluster_size=min_size, min_samples=2, copy=True).fit_predict(
            vectors.astype(np.float64)
        )
        report(f"hdbscan min_cluster_size {min_size}", [score(labels, people)])
    for distance in (0.05, 0.06, 0.07):
        for min_size in (2, 3):
            labels = at_least(average_linkage(vectors, distance), min_size)
            report(f"average linkage {distance} min {min_size}", [score(labels, people)])
    rng = np.random.default_rng(0)
    for radius in (0.02, 0.03):
        for distance in (0.05, 0.06, 0.07):
            for min_size in (2, 3):
                runs = []
                for _ in range(3):
                    order = rng.permutation(len(vectors))
                    labels = np.empty(len(vectors), int)
                    labels[order] = at_least(two_stage(vectors[order], radius, distance), min_size)
                    runs.append(score(labels, people))
                report(f"two-stage radius {radius} distance {distance} min {min_size}", runs)


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def scale(sizes: list[int]) -> None:
    """Timing only, on synthetic unit vectors: 20 faces per person around a centre."""
    rng = np.random.default_rng(0)
    print("\ntiming on synthetic vectors (seconds)")
    for dim in (128, 512):
        for n in sizes:
            centres = rng.normal(size=(n // 20, dim))
            noisy = centres[rng.integers(0, len(centres), n)] + 0.7 * rng.normal(size=(n, dim))
            vectors = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
            seconds = timed(lambda v=vectors: two_stage(v, 0.3, 0.5))
            print(f"two-stage  {n:>6} faces  {dim}-d  {seconds:6.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="clustering unknown faces: measurements")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--backbone", default="dlib")
    parser.add_argument("--no-scale", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000])
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    vectors, people = embed_folder(args.folder, args.backbone)
    quality(vectors, people)
    if not args.no_scale:
        scale(args.sizes)


if __name__ == "__main__":
    main()
