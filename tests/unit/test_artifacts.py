"""Atomic, versioned, checked artifacts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facestore import artifacts
from facestore.errors import ModelIncompatibleError, ModelIntegrityError, ModelNotFoundError
from facestore.repository import ModelRepository


def publish_tagged(model_dir: Path, tag: int, keep: int = 5) -> str:
    """A version whose every file carries the same tag, so a mix is visible."""
    return ModelRepository(model_dir, keep).publish(
        {"tag": tag},
        [tag, f"person-{tag}"],
        {"config_hash": f"space-{tag}", "backbone": "fake"},
        {"tag": tag, "accuracy": tag / 100},
    )


def test_publish_writes_the_files_and_a_manifest(tmp_path: Path) -> None:
    version = publish_tagged(tmp_path, 1)
    for name in (*artifacts.ARTIFACT_FILES, artifacts.MANIFEST_FILE):
        assert (tmp_path / name).is_file(), name
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest) >= {"files", "sklearn", "numpy", "facestore", "version"}
    assert set(manifest["files"]) == set(artifacts.ARTIFACT_FILES)
    assert (tmp_path / "version.txt").read_text().startswith(version + "\n")
    bundle = artifacts.load_bundle(tmp_path)
    assert (bundle.version, bundle.classifier, bundle.person_ids) == (
        version,
        {"tag": 1},
        [1, "person-1"],
    )


def test_person_id_types_survive_the_mapping(tmp_path: Path) -> None:
    publish_tagged(tmp_path, 3)
    assert json.loads((tmp_path / "person_id_mapping.json").read_text()) == [3, "person-3"]


def test_no_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="No published model in .*Run 'facestore retrain'"):
        artifacts.load_bundle(tmp_path)


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # writes through the symlink


@pytest.mark.parametrize("name", artifacts.ARTIFACT_FILES)
def test_a_flipped_byte_is_refused_before_unpickling(tmp_path: Path, name: str) -> None:
    publish_tagged(tmp_path, 1)
    flip_byte(tmp_path / name)
    with pytest.raises(ModelIntegrityError, match="Integrity check failed"):
        artifacts.load_bundle(tmp_path)


def test_a_file_copied_over_the_link_is_checked_too(tmp_path: Path) -> None:
    publish_tagged(tmp_path, 1)
    link = tmp_path / "classifier.pkl"
    data = link.read_bytes()
    link.unlink()
    link.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ModelIntegrityError, match="classifier.pkl does not match the sha256"):
        artifacts.load_bundle(tmp_path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    version = publish_tagged(tmp_path, 1)
    (tmp_path / "history" / version / "metrics.json").unlink()
    with pytest.raises(ModelIntegrityError, match="is missing metrics.json"):
        artifacts.load_bundle(tmp_path)


def test_manifest_that_does_not_match_is_refused(tmp_path: Path) -> None:
    version = publish_tagged(tmp_path, 1)
    path = tmp_path / "history" / version / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["person_id_mapping.json"] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="person_id_mapping.json does not match"):
        artifacts.load_bundle(tmp_path)


def test_other_sklearn_minor_is_refused(tmp_path: Path) -> None:
    version = publish_tagged(tmp_path, 1)
    path = tmp_path / "history" / version / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["sklearn"] = "0.24.2"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelIncompatibleError, match="built with scikit-learn 0.24.2"):
        artifacts.load_bundle(tmp_path)


def test_history_keeps_the_last_n_and_rolls_back(tmp_path: Path) -> None:
    versions = [publish_tagged(tmp_path, i, keep=3) for i in range(5)]
    assert artifacts.list_versions(tmp_path) == versions[-3:]
    assert [row["version"] for row in ModelRepository(tmp_path).history()] == versions[:-4:-1]
    assert ModelRepository(tmp_path).history()[0]["current"] is True

    assert ModelRepository(tmp_path).rollback() == versions[3]
    assert artifacts.load_bundle(tmp_path).classifier == {"tag": 3}
    assert ModelRepository(tmp_path).rollback(versions[4]) == versions[4]
    summary = ModelRepository(tmp_path).summary()
    assert summary is not None
    assert (summary["version"], summary["accuracy"], summary["current"]) == (
        versions[4],
        0.04,
        True,
    )
    with pytest.raises(ModelNotFoundError, match="No model version 'nope'"):
        ModelRepository(tmp_path).describe("nope")
    with pytest.raises(ModelNotFoundError, match="Model version nope is not in"):
        ModelRepository(tmp_path).rollback("nope")


def test_rollback_refuses_a_damaged_version(tmp_path: Path) -> None:
    old = publish_tagged(tmp_path, 1)
    publish_tagged(tmp_path, 2)
    flip_byte(tmp_path / "history" / old / "classifier.pkl")
    with pytest.raises(ModelIntegrityError):
        ModelRepository(tmp_path).rollback()
    assert artifacts.load_bundle(tmp_path).classifier == {"tag": 2}


READER = """
import json, sys, time
from pathlib import Path
from facestore.artifacts import load_bundle
model_dir, until = Path(sys.argv[1]), time.time() + float(sys.argv[2])
loads, mixed, versions = 0, 0, set()
while time.time() < until:
    b = load_bundle(model_dir)
    tag = b.classifier["tag"]
    if not (b.person_ids[0] == tag and b.metrics["tag"] == tag
            and b.embedding_config["config_hash"] == f"space-{tag}"):
        mixed += 1
    loads += 1
    versions.add(b.version)
print(json.dumps({"loads": loads, "mixed": mixed, "versions": len(versions)}))
"""


def test_a_reader_never_sees_a_mix_while_retrains_publish(tmp_path: Path) -> None:
    publish_tagged(tmp_path, 0, keep=2)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(tmp_path), "4"], stdout=subprocess.PIPE, text=True
    )
    tag = 1
    while reader.poll() is None:
        publish_tagged(tmp_path, tag, keep=2)  # keep=2 also prunes under the reader's feet
        tag += 1
    out, _ = reader.communicate()
    assert reader.returncode == 0, out
    result = json.loads(out)
    assert result["mixed"] == 0
    assert result["loads"] > 50 and result["versions"] > 5 and tag > 20


PUBLISHER = """
import sys
from pathlib import Path
from facestore.repository import ModelRepository
model_dir = Path(sys.argv[1])
big = bytes(3_000_000)  # a large classifier, so a kill often lands mid-write
for tag in range(10_000):
    ModelRepository(model_dir, keep=3).publish(
        {"tag": tag, "pad": big}, [tag], {"config_hash": "s"}, {"tag": tag}
    )
"""


@pytest.mark.slow
def test_a_publish_killed_half_way_leaves_the_previous_model_loadable(tmp_path: Path) -> None:
    ModelRepository(tmp_path).publish({"tag": -1}, [-1], {"config_hash": "s"}, {"tag": -1})
    for delay in (0.9, 1.0, 1.1, 1.25, 1.4, 1.6):
        publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(tmp_path)])
        time.sleep(delay)
        os.kill(publisher.pid, signal.SIGKILL)
        publisher.wait()
        bundle = artifacts.load_bundle(tmp_path)
        assert bundle.person_ids == [bundle.classifier["tag"]]
    publish_tagged(tmp_path, 99)  # the next publish cleans up staging left by kills
    assert not list((tmp_path / "history").glob(".tmp-*"))
