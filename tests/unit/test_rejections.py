"""face_rejection: a person the app's user rejected for a face is never suggested for it
again: through new models, a rollback and a reembed; the next person the open-set rule
accepts is suggested instead, or nobody."""

from __future__ import annotations

from pathlib import Path

import pytest

from facestore import db as database
from facestore.backbones import space_of
from facestore.daemon.suggester import Suggester
from facestore.embedding import embed_pending
from facestore.predict import Predictor
from facestore.reembed import activate, build_space
from facestore.repository import ModelRepository
from facestore.retrain import retrain
from facestore.store import Store
from tests.support.helpers import FakeBackbone, make_app_db, sqlite_exec, sqlite_rows
from tests.unit.test_daemon import FakeClock, make_daemon


@pytest.fixture
def library(tmp_path: Path) -> Path:
    path = make_app_db(tmp_path / "app.db", people=4, per_person=5, unverified=8)
    database.upgrade(database.create_engine(f"sqlite:///{path}"))
    return path


def suggested(db: Path) -> dict[int, int]:
    return dict(sqlite_rows(db, "SELECT face_id, person_id FROM face_suggestion"))


def reject(db: Path, face_id: int, person_id: int) -> None:
    sqlite_exec(
        db, "INSERT INTO face_rejection (face_id, person_id) VALUES (?, ?)", face_id, person_id
    )


def test_a_rejected_person_is_never_suggested_again(library: Path, tmp_path: Path) -> None:
    # min_confidence 0: the rule accepts everyone, so "the next person" is always there
    daemon = make_daemon(library, tmp_path, FakeClock(), min_confidence=0.0)
    daemon.reconcile()
    first = suggested(library)
    assert len(first) == 8
    rejected: dict[int, set[int]] = {face_id: {person} for face_id, person in first.items()}
    for face_id, person in first.items():
        reject(library, face_id, person)
    daemon.reconcile()  # the next reconcile reacts, with the same model
    second = suggested(library)
    assert second.keys() == first.keys()
    assert all(second[f] not in rejected[f] for f in second)  # the next accepted person

    everyone = {0, 1, 2, 3}
    lonely = min(first)
    for person in everyone - rejected[lonely]:
        reject(library, lonely, person)
    rejected[lonely] = everyone
    for face_id, person in second.items():
        if face_id != lonely:
            reject(library, face_id, person)
            rejected[face_id].add(person)
    daemon.reconcile()
    assert lonely not in suggested(library)  # nobody left to suggest

    store = Store(database.create_engine(f"sqlite:///{library}"))
    models = tmp_path / "model"
    for seed in (1, 2, 3):  # new models: every suggestion is rewritten
        retrain(store, models, seed=seed)
        daemon.reconcile()
        now = suggested(library)
        assert now and all(now[f] not in rejected[f] for f in now), seed
    ModelRepository(models).rollback()
    daemon.reconcile()
    now = suggested(library)
    assert now and all(now[f] not in rejected[f] for f in now)

    # a reembed to another space, then suggestions with the model trained there
    other = FakeBackbone(salt=1)
    space, _, _ = build_space(store, other)
    activate(store, space, models)
    embed_pending(store, other, verified=False)  # the unverified faces in the new space
    predictor = Predictor.load(models)
    Suggester(store, 0.0).suggest(predictor, space_of(other).config_hash, replace_all=True)
    now = suggested(library)
    assert now and all(now[f] not in rejected[f] for f in now)
    assert sqlite_rows(library, "SELECT count(*) FROM face_rejection") == [
        (sum(map(len, rejected.values())),)
    ]


def test_un_rejecting_brings_the_person_back(library: Path, tmp_path: Path) -> None:
    daemon = make_daemon(library, tmp_path, FakeClock(), min_confidence=0.0)
    daemon.reconcile()
    face_id, person = sorted(suggested(library).items())[0]
    reject(library, face_id, person)
    daemon.reconcile()
    assert suggested(library)[face_id] != person
    sqlite_exec(library, "DELETE FROM face_rejection WHERE face_id = ?", face_id)
    daemon.reconcile()
    assert suggested(library)[face_id] == person
