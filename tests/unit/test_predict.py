"""The predictor's open-set decisions, with models published the way retrain publishes them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from facestore import artifacts
from facestore.classifiers import classifier_factory
from facestore.errors import ModelIntegrityError
from facestore.predict import Predictor
from facestore.repository import ModelRepository
from facestore.training import build_dataset, fit


def published(tmp_path: Path, people: int = 12, per_person: int = 8) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(people, 32)) * 4
    labels = np.repeat(np.arange(people), per_person)
    vectors = (centres[labels] + rng.normal(size=(len(labels), 32))).astype(np.float32)
    person_ids = [f"p{label}" for label in labels]
    dataset = build_dataset(list(range(len(labels))), person_ids, vectors)
    result = fit(dataset, classifier_factory("auto"))
    model_dir = tmp_path / "model"
    ModelRepository(model_dir).publish(
        result.estimator,
        dataset.classes,
        {"config_hash": "h", "backbone": "fake"},
        result.metrics(),
        open_set=result.open_set,
    )
    return model_dir, centres


def test_known_faces_are_named_and_a_stranger_is_unknown(tmp_path: Path) -> None:
    model_dir, centres = published(tmp_path)
    predictor = Predictor.load(model_dir)
    stranger = np.full((1, 32), 9.0, dtype=np.float32)
    known, nobody = predictor.classify(np.vstack([centres[3:4], stranger]), ["k", "s"])
    assert known.person_id == "p3" and known.confidence > 0.9
    assert nobody.person_id is None and nobody.top_k  # best guesses still listed
    assert nobody.confidence == nobody.top_k[0]["confidence"] < 0.5
    assert {"person_id", "confidence", "probability", "distance"} == set(known.top_k[0])
    threshold = predictor.bundle.open_set.threshold  # type: ignore[union-attr]
    assert known.top_k[0]["distance"] <= threshold < nobody.top_k[0]["distance"]


def test_min_confidence_overrides_the_calibrated_rule(tmp_path: Path) -> None:
    model_dir, centres = published(tmp_path)
    predictor = Predictor.load(model_dir)
    stranger = np.full((1, 32), 9.0, dtype=np.float32)
    [forced] = predictor.classify(stranger, ["s"], min_confidence=0.0)
    assert forced.person_id is not None
    [refused] = predictor.classify(centres[3:4], ["k"], min_confidence=1.0)
    assert refused.person_id is None


def test_a_model_from_before_the_rule_falls_back_to_probability_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir, centres = published(tmp_path)
    bundle = dataclasses.replace(artifacts.load_bundle(model_dir), open_set=None)
    with caplog.at_level("WARNING"):
        predictor = Predictor(bundle)
    assert "has no open-set rule" in caplog.text and "facestore retrain" in caplog.text
    [row] = predictor.classify(centres[3:4], ["k"])
    assert row.person_id == "p3" and row.confidence == row.top_k[0]["probability"]
    assert "distance" not in row.top_k[0]  # no rule: no distance to report


def test_a_changed_open_set_file_fails_the_integrity_check(tmp_path: Path) -> None:
    model_dir, _ = published(tmp_path)
    target = (model_dir / "open_set.npz").resolve()
    data = bytearray(target.read_bytes())
    data[-10] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="open_set.npz does not match the sha256"):
        Predictor.load(model_dir)


def test_most_probable_is_a_stable_argsorts_head() -> None:
    from facestore.ranking import most_probable

    rng = np.random.default_rng(0)
    for _ in range(200):
        proba = rng.integers(0, 5, size=30).astype(float)  # many ties
        k = int(rng.integers(1, 31))
        assert most_probable(proba, k).tolist() == np.argsort(-proba, kind="stable")[:k].tolist()


def test_most_probable_rows_is_most_probable_of_each_row() -> None:
    from facestore.ranking import most_probable, most_probable_rows

    rng = np.random.default_rng(0)
    for ties in (3, 1000):  # many ties at the k-th value, or next to none
        proba = rng.integers(0, ties, size=(50, 40)).astype(np.float32)
        before = proba.copy()
        for k in (1, 3, 16, 17, 40, 41):
            want = [most_probable(row, k).tolist() for row in proba]
            assert most_probable_rows(proba, k).tolist() == want
            assert np.array_equal(proba, before)  # left as it was


def test_classify_in_chunks_answers_as_in_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facestore import predict

    model_dir, centres = published(tmp_path)
    predictor = Predictor.load(model_dir)
    rng = np.random.default_rng(1)
    vectors = np.vstack([centres, rng.normal(size=(5, 32)) * 4]).astype(np.float32)
    labels = [str(i) for i in range(len(vectors))]
    excluded = [{"p1"} if i % 4 == 0 else set() for i in range(len(vectors))]
    whole = predictor.classify(vectors, labels, top_k=5, excluded=excluded)
    monkeypatch.setattr(predict, "CLASSIFY_CHUNK", 4)
    assert predictor.classify(vectors, labels, top_k=5, excluded=excluded) == whole
    assert len(whole) == 17 and all(p.person_id != "p1" for p in whole[::4])


def test_no_model_says_what_to_pass_in_python_and_on_the_command_line(tmp_path: Path) -> None:
    from facestore.errors import ModelNotFoundError
    from facestore.predict import Predictor

    with pytest.raises(ModelNotFoundError) as caught:
        Predictor.load(tmp_path / "model")
    assert "or pass model_dir (or FACESTORE_MODEL_DIR)" in str(caught.value)  # issue 37
    assert "--model-dir" not in str(caught.value)
    assert "or pass --model-dir / FACESTORE_MODEL_DIR" in caught.value.for_command_line
