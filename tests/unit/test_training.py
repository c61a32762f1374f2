"""Dataset, split and fit: the pure core of retraining."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from facestore.classifiers import CLASSIFIERS, ShrinkageLDA, classifier_factory, seed_svc
from facestore.errors import TrainingError
from facestore.training import TRAINING_DTYPE, build_dataset, fit, stratified_split


def clustered(counts: dict, dim: int = 16, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    person_ids, vectors = [], []
    for person, count in counts.items():
        centre = rng.normal(0, 1, dim) * 3
        for _ in range(count):
            person_ids.append(person)
            vectors.append(centre + rng.normal(0, 0.3, dim))
    return list(range(len(person_ids))), person_ids, np.asarray(vectors, dtype=np.float32)


def test_seed_svc_is_exactly_the_seed_default() -> None:
    pipeline = seed_svc(42, 10)
    assert isinstance(pipeline, Pipeline)
    scaler, svc = (step for _, step in pipeline.steps)
    assert isinstance(scaler, StandardScaler) and isinstance(svc, SVC)
    params = svc.get_params()
    assert (params["kernel"], params["probability"], params["class_weight"]) == (
        "linear",
        True,
        "balanced",
    )
    assert params["random_state"] == 42


def test_singleton_classes_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    face_ids, person_ids, vectors = clustered({"a": 5, "b": 5, "lonely": 1, 7: 1})
    with caplog.at_level("WARNING"):
        dataset = build_dataset(face_ids, person_ids, vectors)
    assert dataset.dropped_classes == [7, "lonely"]
    assert dataset.dropped_samples == 2
    assert dataset.classes == ["a", "b"]
    assert "lonely" in caplog.text and "7" in caplog.text


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({}, "There are no vectors of verified faces"),
        ({"a": 5, "b": 1}, r"Need at least 2 people with 2\+ embedded verified faces"),
    ],
)
def test_too_little_data_is_refused(counts: dict, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        build_dataset(*clustered(counts))


@pytest.mark.parametrize(
    ("size", "fraction", "expected_val"),
    [(2, 0.2, 0), (3, 0.2, 1), (10, 0.2, 2), (2, 0.9, 1), (5, 0.0, 0)],
)
def test_split_keeps_a_training_sample_per_class(size: int, fraction: float, expected_val: int):
    labels = np.repeat([0, 1], size)
    train, val = stratified_split(labels, fraction, seed=3)
    assert len(val) == 2 * expected_val
    assert set(labels[train]) == {0, 1}
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(2 * size))


def test_split_is_deterministic_per_seed() -> None:
    labels = np.repeat(np.arange(5), 10)
    a = stratified_split(labels, 0.2, 1)
    b = stratified_split(labels, 0.2, 1)
    c = stratified_split(labels, 0.2, 2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_every_classifier_learns_separable_people(name: str) -> None:
    dataset = build_dataset(*clustered({f"p{i}": 6 for i in range(5)}))
    result = fit(dataset, classifier_factory(name), val_fraction=0.34, seed=0)
    assert result.accuracy == 1.0
    assert (result.n_train, result.n_val) == (20, 10)
    # published model is refit on all kept samples
    assert result.estimator.predict(dataset.vectors).tolist() == dataset.labels.tolist()
    assert result.estimator.predict_proba(dataset.vectors[:1]).shape == (1, 5)
    assert result.estimator.predict_proba(dataset.vectors).sum(1) == pytest.approx(1.0)


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_every_classifier_learns_from_a_float16_training_matrix(name: str) -> None:
    """Retrain keeps its matrix in TRAINING_DTYPE (float16): build_dataset uses it as is."""
    face_ids, person_ids, vectors = clustered({f"p{i}": 6 for i in range(5)})
    half = vectors.astype(TRAINING_DTYPE)
    dataset = build_dataset(face_ids, person_ids, half)
    assert half.dtype == np.float16 and np.shares_memory(dataset.vectors, half)
    result = fit(dataset, classifier_factory(name), val_fraction=0.34, seed=0)
    assert result.accuracy == 1.0
    assert result.estimator.predict(vectors).tolist() == dataset.labels.tolist()


def test_a_scikit_learn_model_is_given_float32_rows_of_a_float16_matrix() -> None:
    """A StandardScaler keeps float16 and would compute in it: fit and predict upcast."""
    from facestore.classifiers import CosineCentroid

    seen: list[np.dtype] = []

    class Recording:  # a model without fit_rows: fit(X, y) on a copy of the rows
        def __init__(self) -> None:
            self.model = CosineCentroid()

        def fit(self, X: np.ndarray, y: np.ndarray) -> Recording:
            seen.append(X.dtype)
            self.model.fit(X, y)
            self.classes_ = self.model.classes_
            return self

        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            seen.append(X.dtype)
            return self.model.predict_proba(X)

    half = clustered({f"p{i}": 6 for i in range(3)})
    dataset = build_dataset(half[0], half[1], half[2].astype(np.float16))
    fit(dataset, lambda seed, n: Recording(), val_fraction=0.34, seed=0)
    assert seen and set(seen) == {np.dtype(np.float32)}


def test_shrinkage_lda_on_float16_rows_is_the_float32_model() -> None:
    """Rounding unit vectors to float16 (about 3 significant digits) moves the model by
    a hair: the same predictions, probabilities within 1e-3."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(20, 128))
    labels = np.repeat(np.arange(20), 15)
    vectors = centres[labels] + rng.normal(scale=0.6, size=(len(labels), 128))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    full = ShrinkageLDA().fit(vectors, labels)
    half = ShrinkageLDA().fit(vectors.astype(np.float16), labels)
    probe = rng.normal(size=(200, 128)).astype(np.float32) + centres[rng.integers(0, 20, 200)]
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    assert np.array_equal(full.predict(probe), half.predict(probe))
    assert np.abs(full.predict_proba(probe) - half.predict_proba(probe)).max() < 1e-3


def test_centroid_fits_a_subset_of_rows_as_it_fits_those_rows() -> None:
    from facestore.classifiers import CosineCentroid

    _, person_ids, vectors = clustered({"a": 5, "b": 4, "c": 6})
    labels = np.asarray([ord(p) for p in person_ids])
    subset = np.flatnonzero(np.arange(len(labels)) % 4 != 1)
    on_rows = CosineCentroid().fit_rows(vectors.astype(np.float16), labels, subset)
    on_copy = CosineCentroid().fit(vectors[subset], labels[subset])
    assert list(on_rows.classes_) == list(on_copy.classes_)
    assert np.allclose(on_rows.centroids_, on_copy.centroids_, atol=1e-3)


def test_an_injected_factory_is_used() -> None:
    calls = []

    def factory(seed: int, n_train: int):  # type: ignore[no-untyped-def]
        calls.append((seed, n_train))
        return seed_svc(seed, n_train)

    dataset = build_dataset(*clustered({"a": 5, "b": 5}))
    fit(dataset, factory, val_fraction=0.2, seed=9)
    assert calls == [(9, 8), (9, 10)]


def test_unknown_classifier_name() -> None:
    with pytest.raises(
        TrainingError,
        match="Unknown classifier 'nope'. Choose one of: auto, centroid, knn, lda, logreg, svc",
    ):
        classifier_factory("nope")


def test_auto_is_shrinkage_lda_at_every_size() -> None:

    from facestore.classifiers import auto, resolve_name

    assert resolve_name("auto", 10) == "lda"
    assert resolve_name("auto", 10**6) == "lda"
    assert resolve_name("logreg", 10**6) == "logreg"
    assert isinstance(auto(42, 100), ShrinkageLDA)
    assert isinstance(auto(42, 10**6), ShrinkageLDA)


@pytest.mark.parametrize("n_classes", [2, 7])
@pytest.mark.parametrize("covariance_chunk", [8192, 4])
def test_shrinkage_lda_is_scikit_learns_lda(
    n_classes: int, covariance_chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same model as LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"),
    on all rows and on a subset given by index (which the retrain uses to validate),
    with each person's rows summed at once or a few at a time."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from facestore import own_classifiers

    monkeypatch.setattr(own_classifiers, "COVARIANCE_CHUNK", covariance_chunk)

    counts = {f"p{i}": 3 + 4 * i for i in range(n_classes)}
    _, person_ids, vectors = clustered(counts, dim=24, seed=n_classes)
    labels = np.asarray([int(p[1:]) * 10 for p in person_ids])
    subset = np.flatnonzero(np.arange(len(labels)) % 3 != 0)
    for rows in (None, subset):
        X, y = (vectors, labels) if rows is None else (vectors[rows], labels[rows])
        expected = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X, y)
        model = ShrinkageLDA(chunk=5).fit_rows(vectors, labels, rows)
        assert list(model.classes_) == list(expected.classes_)
        assert np.allclose(model.covariance_, expected.covariance_, atol=1e-6)
        assert np.allclose(model.predict_proba(vectors), expected.predict_proba(vectors), atol=1e-4)
        assert np.array_equal(model.predict(vectors), expected.predict(vectors))


def test_dropping_classes_moves_the_kept_rows_up_in_place() -> None:
    counts = {"a": 3000, "lonely": 1, "b": 2500, 7: 1, "c": 4}
    face_ids, person_ids, vectors = clustered(counts, dim=4)
    original = vectors.copy()
    dataset = build_dataset(face_ids, person_ids, vectors)
    kept = [i for i, p in enumerate(person_ids) if p not in ("lonely", 7)]
    assert np.shares_memory(dataset.vectors, vectors)
    assert np.array_equal(dataset.vectors, original[kept])
    assert dataset.face_ids == kept


def test_centroid_probabilities_are_a_softmax_of_cosines() -> None:
    from facestore.classifiers import CosineCentroid

    X = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    model = CosineCentroid(temperature=0.05, chunk=1).fit(X, np.array([0, 0, 1, 1]))
    proba = model.predict_proba(np.array([[1, 0], [0, 1]], dtype=np.float32))
    assert np.allclose(proba.sum(1), 1) and proba[0, 0] > 0.99 and proba[1, 1] > 0.99
    assert model.predict(np.array([[0.2, 1]], dtype=np.float32)).tolist() == [1]
