"""`facestore evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.helpers import (
    make_app_db,
)
from tests.support.types import Cli


def test_evaluate_json_and_plot(
    cli: Cli, embedded_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure
    from PIL import Image

    saved: list[Figure] = []
    save = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda self, *a, **k: (saved.append(self), save(self, *a, **k))
    )
    plot = tmp_path / "eval.png"
    result = cli("--db", embedded_db, "evaluate", "--json", "--plot", plot, "--seeds", "2")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["closed_set"]) == {"auto", "svc", "lda", "logreg", "knn", "centroid"}
    assert report["faces"] == 24 and report["people"] == 4  # the one-face person is dropped
    assert all(0 <= r["accuracy"] <= 1 for r in report["closed_set"].values())
    open_set = report["open_set"]
    assert open_set["classifier"] == "auto" and open_set["strangers_per_seed"] == 1
    curve = open_set["curve"]
    rejected = [p["strangers_rejected"] for p in curve]
    named = [p["named_right"] + p["named_wrong"] for p in curve]
    assert rejected == sorted(rejected, reverse=True) and named == sorted(named)
    for p in curve:
        assert p["named_right"] + p["named_wrong"] + p["unknown"] == pytest.approx(1, abs=1e-3)
    assert open_set["calibrated"]["far_target"] == 0.03
    assert isinstance(report["split_people"], list)  # its rule: tests/unit/test_split_people.py
    text = cli("--db", embedded_db, "evaluate", "--seeds", "2").stdout
    assert "faces in two groups" in text and "most confused pairs" in text
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size == (1200, 500)
    [figure] = saved
    closed_set = figure.axes[1]
    assert closed_set.get_ylim()[0] == 0  # accuracy from 0: small differences look small
    labels = [t.get_text() for t in closed_set.texts]
    assert len(labels) == 6 and all("\n± " in t for t in labels)


def test_evaluate_needs_three_people(cli: Cli, tmp_path: Path, fake_registered: None) -> None:
    path = make_app_db(tmp_path / "two.db", people=2, per_person=4)
    assert cli("--db", path, "db", "upgrade").exit_code == 0
    assert cli("--db", path, "embed", "--backbone", "fake").exit_code == 0
    result = cli("--db", path, "evaluate")
    assert result.exit_code == 1
    assert "needs at least 3 people" in result.output and "Verify more people" in result.output


def test_evaluate_plot_without_matplotlib_fails_before_the_work(
    cli: Cli, tmp_path: Path, fake_registered: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_app_db(tmp_path / "two.db", people=2, per_person=4)
    assert cli("--db", path, "db", "upgrade").exit_code == 0
    assert cli("--db", path, "embed", "--backbone", "fake").exit_code == 0
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # not installed
    result = cli("--db", path, "evaluate", "--plot", tmp_path / "quality.png")
    # the work would fail with "needs at least 3 people": the missing extra is said first
    assert result.exit_code == 2, result.output
    assert "--plot needs matplotlib" in result.output and "facestore[plot]" in result.output
    assert "needs at least 3 people" not in result.output
