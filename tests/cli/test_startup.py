"""A fast CLI start: `facestore --help` imports no command module, and the light commands
(status, db current, model list, failures) import neither torch, scikit-learn nor Alembic.
Checked by what is imported, not by timing (bench/scale.py prints the times)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from facestore.cli.main import COMMANDS, main
from facestore.cli.reference import commands
from tests.support.helpers import encode, face_image
from tests.support.processes import app_db
from tests.support.types import Cli

HEAVY = ("torch", "sklearn", "alembic", "scipy", "facenet_pytorch", "dlib")
# what no --help may load (issue 37: a --help took 5-15 s on a loaded machine)
NOT_FOR_HELP = (*HEAVY, "numpy", "PIL", "faiss", "sqlalchemy")

PROBE = """
import json, sys
from facestore.cli.main import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy})))
"""


def imported_by(
    *args: str, heavy: tuple[str, ...] = HEAVY, env: dict[str, str] | None = None
) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=set(heavy)), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_command_resolves_and_help_lists_its_own_words() -> None:
    ctx = click.Context(main)
    for name, (_, short_help) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name
        assert command.get_short_help_str(limit=1000) == short_help, name
    text = main.get_help(ctx)
    assert all(f"  {name} " in text for name in COMMANDS)


def test_help_imports_no_command_and_nothing_heavy() -> None:
    assert imported_by("--help") == []
    probe = (
        "import sys, facestore.cli.main; "
        "print(sorted(m for m in sys.modules if m.startswith('facestore.cli.')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "facestore.cli.watch" not in out.stdout and "sqlalchemy" not in out.stdout


@pytest.mark.parametrize(
    "command", [["status", "--json"], ["db", "current"], ["model", "list"], ["failures"]]
)
def test_light_commands_import_nothing_heavy(tmp_path: Path, command: list[str]) -> None:
    db = app_db(tmp_path / "app.db", people=2, per_person=2)
    assert imported_by("--db", str(db), "--model-dir", str(tmp_path / "m"), *command) == []


def every_command() -> list[list[str]]:
    """Each command line that has a --help: the commands of docs/cli.md (the same walk)."""
    root = main.make_context("facestore", [], resilient_parsing=True)
    return [name.split() for name, _, _ in commands(main, root)]


@pytest.mark.parametrize("command", every_command(), ids=" ".join)
def test_no_help_imports_torch_scikit_learn_or_numpy(command: list[str]) -> None:
    assert imported_by(*command, "--help", heavy=NOT_FOR_HELP) == []


@pytest.mark.parametrize("backbone", ["dlib", "vggface2"])
def test_one_predict_loads_only_what_its_backbone_needs(
    cli: Cli, tmp_path: Path, weights_file: Path, backbone: str
) -> None:
    """A prediction of one image file: no scikit-learn (the default classifier is
    facestore's own), no database layer, no torchvision (facenet-pytorch's MTCNN); with
    dlib no torch either (the face score runs in numpy)."""
    db = app_db(tmp_path / "app.db", people=3, per_person=3)
    env = {"FACESTORE_WEIGHTS": str(weights_file)}
    trained = cli(
        "--db", db, "--model-dir", tmp_path / "m", "train", "--backbone", backbone, env=env
    )
    assert trained.exit_code == 0, trained.output
    image = tmp_path / "face.png"
    image.write_bytes(encode(face_image(1, 50), "PNG"))
    not_needed = ("sklearn", "scipy", "torchvision", "sqlalchemy", "alembic")
    if backbone == "dlib":
        not_needed += ("torch", "facenet_pytorch")
    line = ["--model-dir", str(tmp_path / "m"), "predict", str(image)]
    names = imported_by(*line, heavy=(*not_needed, "torch", "dlib"), env=env)
    loaded = {name.split(".")[0] for name in names}
    assert loaded & set(not_needed) == set()
    assert loaded == ({"dlib"} if backbone == "dlib" else {"torch"})  # it did predict


def test_facenet_pytorchs_network_loads_without_its_detector_and_the_package_stays_whole() -> None:
    probe = (
        "import sys; from facestore.backbones.facenet import inception_resnet_v1; "
        "cls = inception_resnet_v1(); before = 'torchvision' in sys.modules; "
        "import facenet_pytorch; from facenet_pytorch import ONet; "
        "print(before, facenet_pytorch.MTCNN.__name__, facenet_pytorch.InceptionResnetV1 is cls)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "MTCNN", "True"]
