"""The classifiers facestore writes itself, in numpy: cosine nearest centroid and
shrinkage LDA (the default). They have scikit-learn's fit / predict / predict_proba /
classes_ but do not derive from its classes, so that unpickling a model of theirs
(every `predict`) does not import scikit-learn: 0.9 s of a process's start.
facestore.classifiers offers them by name beside scikit-learn's.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from facestore.openset import centroids_of_rows, unit_rows

COVARIANCE_CHUNK = 8192  # rows of one person summed at once by ShrinkageLDA (32 MiB at 512-d)


class CosineCentroid:
    """Nearest class centroid by cosine similarity: fit is one pass over the vectors.

    predict_proba is a softmax of the cosine similarities divided by `temperature`.
    Memory stays at n_classes x dim plus one chunk of similarities at a time.
    """

    def __init__(self, temperature: float = 0.05, chunk: int = 2048) -> None:
        self.temperature = temperature
        self.chunk = chunk

    def fit(self, X: np.ndarray, y: np.ndarray) -> CosineCentroid:
        return self.fit_rows(X, y, None)

    def fit_rows(self, X: np.ndarray, y: np.ndarray, rows: np.ndarray | None) -> CosineCentroid:
        """Fit on X[rows], y[rows] (all rows when None), a chunk of rows at a time."""
        X, y = np.asarray(X), np.asarray(y)
        rows = np.arange(len(X)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.classes_, inverse = np.unique(y[rows], return_inverse=True)
        labels = np.zeros(len(X), dtype=np.int64)
        labels[rows] = inverse
        sums = centroids_of_rows(X, labels, len(self.classes_), rows)[0]
        self.centroids_ = unit_rows(sums).astype(np.float32)
        return self

    def _similarities(self, X: np.ndarray) -> Iterator[np.ndarray]:
        X = unit_rows(np.asarray(X, dtype=np.float32))
        for start in range(0, len(X), self.chunk):
            yield X[start : start + self.chunk] @ self.centroids_.T

    def predict(self, X: np.ndarray) -> np.ndarray:
        parts = [self.classes_[s.argmax(1)] for s in self._similarities(X)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=self.classes_.dtype)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        parts = []
        for sims in self._similarities(X):
            logits = (sims - sims.max(1, keepdims=True)) / self.temperature
            weights = np.exp(logits)
            parts.append(weights / weights.sum(1, keepdims=True))
        return np.concatenate(parts) if parts else np.zeros((0, len(self.classes_)))


def class_members(labels: np.ndarray) -> list[np.ndarray]:
    """The ascending row indices of each label, in label order."""
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(labels[order])) + 1) if len(order) else []


class ShrinkageLDA:
    """scikit-learn's LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), fitted
    class by class over row indices, so a 1M x 512 training matrix is never copied.

    The same model: class means, the prior-weighted sum of each class's Ledoit-Wolf
    covariance of standardised features, coef = lstsq(covariance, means.T).T, and
    predict_proba is the softmax of the decision function (tested against
    scikit-learn's). scikit-learn selects each class with a mask over every row
    (10k classes x 1M rows) and its intercept takes the diagonal of a classes x
    classes product; here the rows are grouped once and the diagonal is a row sum.
    The decision function runs in float32, a chunk at a time.
    """

    def __init__(self, chunk: int = 2048) -> None:
        self.chunk = chunk

    def fit(self, X: np.ndarray, y: np.ndarray) -> ShrinkageLDA:
        return self.fit_rows(X, y, None)

    def fit_rows(self, X: np.ndarray, y: np.ndarray, rows: np.ndarray | None) -> ShrinkageLDA:
        """Fit on X[rows], y[rows] (all rows when None), reading the rows of one class at a time."""
        X, y = np.asarray(X), np.asarray(y)
        rows = np.arange(len(X)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.classes_, labels = np.unique(y[rows], return_inverse=True)
        n_classes, n_features = len(self.classes_), X.shape[1]
        if len(rows) <= n_classes:
            raise ValueError("The number of samples must be more than the number of classes.")
        groups = [rows[members] for members in class_members(labels)]
        self.priors_ = np.bincount(labels, minlength=n_classes) / len(rows)
        means = np.empty((n_classes, n_features))
        covariance = np.zeros((n_features, n_features))
        for index, members in enumerate(groups):
            means[index], class_covariance = _shrunk_class_covariance(X, members)
            covariance += self.priors_[index] * class_covariance
        import scipy.linalg  # for the fit only: a prediction loads numpy alone

        coef = scipy.linalg.lstsq(covariance, means.T)[0].T
        intercept = -0.5 * np.einsum("ij,ij->i", means, coef) + np.log(self.priors_)
        self.means_, self.covariance_ = means, covariance
        self.coef_, self.intercept_ = coef.astype(np.float32), intercept.astype(np.float32)
        self.n_features_in_ = n_features
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        return np.concatenate(
            [
                X[i : i + self.chunk] @ self.coef_.T + self.intercept_
                for i in range(0, len(X), self.chunk)
            ]
            or [np.zeros((0, len(self.classes_)), dtype=np.float32)]
        )

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(1)]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        decision = self.decision_function(X)
        decision -= decision.max(1, keepdims=True)
        np.exp(decision, out=decision)
        decision /= decision.sum(1, keepdims=True)
        return decision


def _shrunk_class_covariance(X: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of X[members]: scikit-learn's shrinkage="auto" covariance, that is
    Ledoit-Wolf on standardised features, scaled back; summed COVARIANCE_CHUNK rows at
    a time, so a person with 60k faces takes no float64 copy of them all (four did)."""
    n, dim = len(members), X.shape[1]
    chunks = [members[i : i + COVARIANCE_CHUNK] for i in range(0, n, COVARIANCE_CHUNK)]

    def rows(chunk: np.ndarray) -> np.ndarray:
        return np.asarray(X[chunk], dtype=np.float64)

    mean = sum((rows(chunk).sum(0) for chunk in chunks), np.zeros(dim)) / n
    var = sum((((rows(chunk) - mean) ** 2).sum(0) for chunk in chunks), np.zeros(dim)) / n
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2  # as StandardScaler decides
    scale = np.where(constant, 1.0, np.sqrt(var))
    # Ledoit-Wolf of the standardised rows Z (mean 0): its sums over rows of Z'Z and Z2'Z2
    products, squares = np.zeros((dim, dim)), np.zeros((dim, dim))
    for chunk in chunks:
        z = (rows(chunk) - mean) / scale
        products += z.T @ z
        z **= 2
        squares += z.T @ z
    empirical = products / n
    trace = np.trace(empirical)
    mu = trace / dim
    if dim == 1:
        shrinkage = 0.0
    else:
        delta_ = float((products**2).sum()) / n**2
        beta = (float(squares.sum()) / n - delta_) / (dim * n)
        delta = (delta_ - 2.0 * mu * trace + dim * mu**2) / dim
        beta = min(beta, delta)
        shrinkage = 0.0 if beta == 0 else beta / delta
    shrunk = (1.0 - shrinkage) * empirical
    shrunk.flat[:: dim + 1] += shrinkage * mu
    return mean, scale[:, None] * shrunk * scale[None, :]
