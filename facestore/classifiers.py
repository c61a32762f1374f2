"""The classifiers facestore can fit, by name. Each factory builds an unfitted scikit-learn
classifier with predict_proba; `auto` is chosen on real faces (docs/accuracy.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from facestore.errors import TrainingError
from facestore.own_classifiers import CosineCentroid as CosineCentroid  # re-exported: models
from facestore.own_classifiers import ShrinkageLDA as ShrinkageLDA  # pickled before the move
from facestore.own_classifiers import class_members as class_members

# A factory builds an unfitted classifier with predict_proba, given the seed and
# the number of training samples.
ClassifierFactory = Callable[[int, int], Any]


def seed_svc(seed: int, n_train: int) -> Pipeline:
    """The seed's default: StandardScaler + linear SVC with probabilities.

    scikit-learn 1.9 deprecates `probability=True` (removed in 1.11, hence the pin
    below 1.11); the seed's exact estimator is kept and that warning is silenced in fit().
    """
    return make_pipeline(
        StandardScaler(),
        SVC(kernel="linear", probability=True, class_weight="balanced", random_state=seed),
    )


def logreg(seed: int, n_train: int) -> Pipeline:
    """Fast: StandardScaler + multinomial logistic regression."""
    return make_pipeline(
        StandardScaler(),
        LogisticRegression(max_iter=1000, class_weight="balanced", random_state=seed),
    )


def knn(seed: int, n_train: int) -> Pipeline:
    """Cosine k-nearest neighbours (k = 5, or fewer for tiny sets), distance-weighted."""
    k = max(1, min(5, n_train))
    return make_pipeline(KNeighborsClassifier(n_neighbors=k, weights="distance", metric="cosine"))


def centroid(seed: int, n_train: int) -> CosineCentroid:
    """Fast and small: cosine nearest centroid (for very large libraries)."""
    return CosineCentroid()


def lda(seed: int, n_train: int) -> ShrinkageLDA:
    """Fast and accurate on large libraries: shrinkage LDA (class means, shared covariance).

    Memory is n_classes x dim plus one dim x dim covariance; the training matrix is
    read one class at a time (1M vectors of 10k people: docs/benchmarks.md).
    """
    return ShrinkageLDA()


# `auto` is shrinkage LDA at every size. Chosen on real dlib embeddings of ORL
# (docs/accuracy.md): 5-fold accuracy lda 0.965, logreg 0.967, knn 0.966, svc 0.958,
# centroid 0.936; of these, lda meets the retrain target (100k vectors, 5k people:
# 49 s, 1 GB) while logreg takes 115 s and 4.9 GB and knn keeps every vector in the model.
AUTO_CLASSIFIER = "lda"


def resolve_name(name: str, n_vectors: int) -> str:
    """The classifier `auto` stands for; other names stand for themselves."""
    return AUTO_CLASSIFIER if name == "auto" else name


def auto(seed: int, n_train: int) -> Any:
    return CLASSIFIERS[resolve_name("auto", n_train)](seed, n_train)


CLASSIFIERS: dict[str, ClassifierFactory] = {
    "auto": auto,
    "svc": seed_svc,
    "logreg": logreg,
    "knn": knn,
    "centroid": centroid,
    "lda": lda,
}


def classifier_factory(name: str) -> ClassifierFactory:
    try:
        return CLASSIFIERS[name]
    except KeyError:
        raise TrainingError(
            f"Unknown classifier {name!r}. Choose one of: {', '.join(sorted(CLASSIFIERS))}."
        ) from None
