"""The open-set rule: is a face one of the known people, and how sure are we. Pure numpy.

The classifier only chooses *which* person. Whether the face is that person at all
is decided from the geometry of the embedding space, calibrated per model from its
own training vectors:

- every vector is scaled to unit length (backbones differ: facenet's vectors are
  unit length, dlib's are not), and each person is summarised by the mean of their
  unit vectors, the *centroid*;
- the *distance* of a face to a person is the Euclidean distance from its unit
  vector to that person's centroid;
- calibration, leave-one-out over the training faces (a sample of at most
  `MAX_PROBES`): the *genuine* distance of a face is to its own person's centroid
  computed without it; its *impostor* distance is to the nearest other person's
  centroid, which is what a stranger's face looks like to the model;
- the threshold is the impostor distance at the target false-accept rate
  (`DEFAULT_FAR`): about that share of strangers come closer than it and are named;
  but never further out than the genuine distance within which GENUINE_COVER of the
  training faces fall: where a backbone keeps people well apart, the target would
  name strangers for no gain in known faces (casia-webface on ORL: 4.9% of strangers
  named at 3%, 0.5% at the cap, for 0.5 points of known faces; dlib: never capped);
- the confidence is a logistic fit of genuine (1) against impostor (0) distances
  with balanced weights: the estimated chance that the name is right, if a known
  person and a stranger were equally likely.

The rule does not depend on the classifier's probability calibration, and it follows
the number of people by itself: the more people are known, the closer the nearest
impostor, the tighter the threshold. Measured on real dlib embeddings of ORL in
docs/accuracy.md.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from facestore.settings import DEFAULT_FAR

# Target share of strangers named as someone. 3% was chosen on ORL with dlib vectors
# (docs/accuracy.md): 1% leaves 16% of known faces unknown, 5% names 4% of strangers.
# The threshold never lies beyond the genuine distance of this share of training faces.
GENUINE_COVER = 0.99
MAX_PROBES = 20_000
MIN_TAIL = 5  # impostor distances below the threshold needed to trust the empirical quantile
CHUNK = 4096
PROBE_CHUNK = 1024  # probes per (probes, people) distance matrix: 41 MB at 10k people
AT_ONCE = 1 << 22  # centroid values gathered at once by distances_at (16 MiB)
RULE_KIND = "centroid-distance/v1"


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def class_centroids(units: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    return centroids_of_rows(units, labels, n_classes, np.arange(len(units)))[0]


def centroids_of_rows(
    vectors: np.ndarray, labels: np.ndarray, n_classes: int, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, counts) of the unit vectors of vectors[rows], a chunk at a time."""
    sums = np.zeros((n_classes, vectors.shape[1]), dtype=np.float64)
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        np.add.at(sums, labels[chunk], unit_rows(vectors[chunk]))
    counts = np.bincount(labels[rows], minlength=n_classes)
    centroids = sums / np.maximum(counts, 1).astype(np.float64)[:, None]
    return centroids.astype(np.float32), counts


def _squared_distances(units: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """|u - c|^2 for unit rows u: 1 - 2 u.c + |c|^2, never below 0. In place: one
    (n, people) matrix, not four (at 4,096 faces and 10k people, 164 MB each)."""
    sq = units @ centroids.T
    sq *= -2.0
    sq += 1.0
    sq += (centroids**2).sum(1)[None, :]
    return np.maximum(sq, 0.0, out=sq)


@dataclass(frozen=True)
class Calibration:
    genuine: np.ndarray  # leave-one-out distance to the own person
    impostor: np.ndarray  # distance to the nearest other person


def probe_sample(n: int, max_probes: int = MAX_PROBES, seed: int = 0) -> np.ndarray:
    """Positions 0..n-1, or a sorted random sample of max_probes of them."""
    probes = np.arange(n)
    if n > max_probes:
        probes = np.sort(np.random.default_rng(seed).choice(probes, max_probes, replace=False))
    return probes


def leave_one_out(
    units: np.ndarray,
    labels: np.ndarray,
    centroids: np.ndarray,
    max_probes: int = MAX_PROBES,
    seed: int = 0,
) -> Calibration:
    """Genuine and impostor distances of (a sample of) the training faces."""
    counts = np.bincount(labels, minlength=len(centroids))
    probes = probe_sample(len(units), max_probes, seed)
    return probe_distances(units[probes], labels[probes], counts, centroids)


def probe_distances(
    units: np.ndarray, labels: np.ndarray, counts: np.ndarray, centroids: np.ndarray
) -> Calibration:
    """Genuine and impostor distances of these training faces (counts: faces per class)."""
    genuine, impostor = [], []
    for start in range(0, len(units), PROBE_CHUNK):
        u, own = units[start : start + PROBE_CHUNK], labels[start : start + PROBE_CHUNK]
        n = counts[own].astype(np.float32)[:, None]
        without_self = (centroids[own] * n - u) / np.maximum(n - 1, 1)
        genuine.append(np.linalg.norm(u - without_self, axis=1))
        sq = _squared_distances(u, centroids)
        sq[np.arange(len(u)), own] = np.inf
        impostor.append(np.sqrt(sq.min(1)))
    return Calibration(np.concatenate(genuine), np.concatenate(impostor))


def _logistic(distances: np.ndarray, genuine: np.ndarray) -> tuple[float, float]:
    """(a, b) of P(genuine | d) = 1 / (1 + exp(-(a + b d))), balanced classes."""
    from sklearn.linear_model import LogisticRegression

    if genuine.all() or not genuine.any():
        return 0.0, 0.0
    model = LogisticRegression(class_weight="balanced", C=100.0)
    model.fit(distances.reshape(-1, 1), genuine.astype(int))
    return float(model.intercept_[0]), float(model.coef_[0, 0])


@dataclass(frozen=True)
class OpenSetRule:
    """Centroids plus a distance threshold and a confidence curve; saved with each model."""

    centroids: np.ndarray  # (n_classes, dim), in the classifier's label order
    threshold: float
    far: float
    intercept: float
    slope: float
    stats: dict[str, Any]

    def distances(self, vectors: np.ndarray) -> np.ndarray:
        """(n, n_classes) distances of faces to every person."""
        if len(vectors) == 0:
            return np.zeros((0, len(self.centroids)), dtype=np.float32)
        return np.sqrt(_squared_distances(unit_rows(vectors), self.centroids))

    def distances_at(self, vectors: np.ndarray, people: np.ndarray) -> np.ndarray:
        """(n, k) distances of each face to k people of its own (centroid indices, (n, k))."""
        units = unit_rows(vectors)
        out = np.empty(people.shape, dtype=np.float32)
        rows = max(1, AT_ONCE // max(1, people.shape[1] * units.shape[1]))
        for start in range(0, len(units), rows):
            centroids = self.centroids[people[start : start + rows]]  # (rows, k, dim)
            dot = np.einsum("nd,nkd->nk", units[start : start + rows], centroids)
            sq = 1.0 - 2.0 * dot + np.einsum("nkd,nkd->nk", centroids, centroids)
            out[start : start + rows] = np.sqrt(np.maximum(sq, 0.0))
        return out

    def distances_to(self, vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """(n,) distance of each face to the person of its label (index into the centroids)."""
        units, centroids = unit_rows(vectors), self.centroids[labels]
        sq = 1.0 - 2.0 * np.einsum("ij,ij->i", units, centroids) + (centroids**2).sum(1)
        return np.sqrt(np.maximum(sq, 0.0))

    def confidence(self, distances: np.ndarray) -> np.ndarray:
        """Estimated chance the name is right at these distances (0..1)."""
        z = self.intercept + self.slope * np.asarray(distances, dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def accepts(self, distances: np.ndarray, min_confidence: float | None = None) -> np.ndarray:
        """Known or not: within the calibrated threshold, or (override) confident enough."""
        distances = np.asarray(distances)
        if min_confidence is None:
            return distances <= self.threshold
        return self.confidence(distances) >= min_confidence

    def describe(self) -> dict[str, Any]:
        """What metrics.json records about the rule."""
        return {
            "kind": RULE_KIND,
            "far_target": self.far,
            "threshold": round(self.threshold, 6),
            "confidence_at_threshold": round(float(self.confidence(np.asarray(self.threshold))), 4),
            **self.stats,
        }

    def to_bytes(self) -> bytes:
        params = {
            "kind": RULE_KIND,
            "threshold": self.threshold,
            "far": self.far,
            "intercept": self.intercept,
            "slope": self.slope,
            "stats": self.stats,
        }
        arrays = {"centroids": self.centroids, "params": np.array(json.dumps(params))}
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
            for name, array in arrays.items():
                # a fixed timestamp (np.savez stamps the clock), so equal rules give equal bytes
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with archive.open(info, "w") as member:
                    np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> OpenSetRule:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            params = json.loads(str(archive["params"]))
            centroids = np.asarray(archive["centroids"], dtype=np.float32)
        if params.get("kind") != RULE_KIND:
            raise ValueError(f"unknown open-set rule {params.get('kind')!r}")
        return cls(
            centroids=centroids,
            threshold=float(params["threshold"]),
            far=float(params["far"]),
            intercept=float(params["intercept"]),
            slope=float(params["slope"]),
            stats=dict(params.get("stats", {})),
        )


def calibrate(
    vectors: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    far: float = DEFAULT_FAR,
    max_probes: int = MAX_PROBES,
    seed: int = 0,
    rows: np.ndarray | None = None,
) -> OpenSetRule:
    """The rule for a model trained on these vectors (labels index 0..n_classes-1), or on
    vectors[rows] only; the vectors are read a chunk at a time, never copied whole.

    Every class needs at least 2 vectors (training drops smaller ones), so that each
    face has a leave-one-out centroid of its own person.
    """
    if not 0 < far < 1:
        raise ValueError(f"far must be in (0, 1), got {far}")
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(vectors)) if rows is None else np.asarray(rows, dtype=np.int64)
    centroids, counts = centroids_of_rows(vectors, labels, n_classes, rows)
    probes = rows[probe_sample(len(rows), max_probes, seed)]
    cal = probe_distances(unit_rows(vectors[probes]), labels[probes], counts, centroids)
    return rule_from(centroids, cal, far)


def impostor_quantile(impostor: np.ndarray, far: float) -> tuple[float, str]:
    """The impostor distance below which a share `far` of impostors fall, and how it was found.

    With enough impostor distances below it (MIN_TAIL), the empirical quantile. A small
    library has too few for that (12 faces at 3% put the threshold at the single
    nearest impostor, which a new stranger beats one time in thirteen); then the
    lower of the empirical quantile and a normal fit's.
    """
    empirical = float(np.quantile(impostor, far))
    if len(impostor) * far >= MIN_TAIL:
        return empirical, "empirical quantile"
    fitted = float(impostor.mean() + NormalDist().inv_cdf(far) * impostor.std(ddof=1))
    return min(empirical, fitted), "normal fit (few impostors)"


def rule_from(centroids: np.ndarray, cal: Calibration, far: float) -> OpenSetRule:
    """The rule at one false-accept target, from a calibration already computed."""
    threshold, method = impostor_quantile(cal.impostor, far)
    enough = float(np.quantile(cal.genuine, GENUINE_COVER)) if len(cal.genuine) else np.inf
    if enough < threshold:
        threshold, method = enough, f"{method}, capped at {GENUINE_COVER:.0%} of own faces"
    distances = np.concatenate([cal.genuine, cal.impostor])
    is_genuine = np.concatenate([np.ones(len(cal.genuine)), np.zeros(len(cal.impostor))])
    intercept, slope = _logistic(distances, is_genuine.astype(bool))
    stats = {
        "probes": int(len(cal.genuine)),
        "threshold_method": method,
        # leave-one-out estimates on the training faces themselves
        "genuine_accept_rate": round(float(np.mean(cal.genuine <= threshold)), 4),
        "impostor_accept_rate": round(float(np.mean(cal.impostor <= threshold)), 4),
        "genuine_median": round(float(np.median(cal.genuine)), 4),
        "impostor_median": round(float(np.median(cal.impostor)), 4),
    }
    return OpenSetRule(centroids, threshold, far, intercept, slope, stats)
