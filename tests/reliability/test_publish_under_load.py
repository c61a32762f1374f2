"""A reader loads the predictor in a loop while 20 retrains publish, some killed mid-publish."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facestore import db as database
from facestore.embedding import embed_pending
from facestore.store import Store
from tests.support.helpers import FakeBackbone, make_app_db
from tests.support.types import Figures

pytestmark = pytest.mark.slow

READER = r"""
import json, sys, time
from pathlib import Path
from facestore.errors import ModelError
from facestore.predict import Predictor
model_dir, stop_file = Path(sys.argv[1]), Path(sys.argv[2])
loads, inconsistent, errors, versions = 0, 0, [], set()
while not stop_file.exists():
    try:
        p = Predictor.load(model_dir)
    except ModelError as exc:
        errors.append(str(exc)); continue
    b = p.bundle
    ok = (
        b.manifest["version"] == b.version == b.metrics.get("version", b.version)
        and len(b.person_ids) == len(b.classifier.classes_)
        and b.metrics["classes_kept"] == len(b.person_ids)
        and (b.directory / "version.txt").read_text().startswith(b.version)
    )
    inconsistent += not ok
    loads += 1
    versions.add(b.version)
print(json.dumps({"loads": loads, "inconsistent": inconsistent, "errors": errors,
                  "versions": len(versions)}))
"""


def test_reader_sees_one_consistent_version_per_load(tmp_path: Path, figures: Figures) -> None:
    db = make_app_db(tmp_path / "app.db", people=6, per_person=8)
    database.upgrade(database.create_engine(f"sqlite:///{db}"))
    embed_pending(Store(database.create_engine(f"sqlite:///{db}")), FakeBackbone())
    model_dir = tmp_path / "model"
    retrain = [
        sys.executable,
        "-m",
        "facestore",
        "--db",
        str(db),
        "--model-dir",
        str(model_dir),
        "retrain",
    ]
    subprocess.run(retrain, check=True, capture_output=True)
    stop_file = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(model_dir), str(stop_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    rng = random.Random(11)
    killed = published = 0
    for n in range(20):
        # alternate classifiers and people counts so versions differ in shape
        args = ["--classifier", rng.choice(["svc", "logreg", "knn"]), "--seed", str(n)]
        proc = subprocess.Popen(
            [*retrain, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=os.environ.copy(),
        )
        if n % 3 == 1:
            time.sleep(rng.uniform(1.0, 2.5))  # interpreter start ~1-2 s, then fit and publish
            if proc.poll() is None:
                proc.kill()
                killed += 1
        proc.wait()
        published += proc.returncode == 0
    stop_file.touch()
    out, _ = reader.communicate(timeout=60)
    result = json.loads(out)
    assert result["inconsistent"] == 0, result
    assert result["errors"] == [], result["errors"][:3]
    assert result["loads"] > 100 and result["versions"] >= 2
    assert not list((model_dir / "history").glob(".tmp-*")) or killed
    figures(
        f"20 retrains ({published} published, {killed} killed with SIGKILL), reader made "
        f"{result['loads']} loads over {result['versions']} versions: 0 inconsistent, 0 errors"
    )
