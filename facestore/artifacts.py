"""Atomic, versioned, checked model artifacts in model/.

Layout:

    model/
      current -> history/<version>          one symlink, swapped atomically
      classifier.pkl -> current/classifier.pkl   (and the other four files, plus
      ...                                          manifest.json: fixed symlinks)
      history/<version>/                     the last N published versions
        classifier.pkl  person_id_mapping.json  embedding_config.json
        metrics.json  version.txt  manifest.json

A version directory is written completely under a temporary name, fsynced, and
renamed into history/; then `current` is replaced by a new symlink with one
rename. A reader resolves `current` once and reads every file from that one
directory, so it never sees two versions mixed, and a publish killed at any point
leaves the previous version current and loadable.

Loading checks, before anything is unpickled: every file is present, its sha256
matches the manifest, and the manifest's scikit-learn major.minor is the
installed one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import logging
import os
import pickle
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from facestore.errors import ModelIncompatibleError, ModelIntegrityError, ModelNotFoundError
from facestore.openset import OpenSetRule
from facestore.quality import QualityGate
from facestore.settings import MODEL_DIR, cite
from facestore.version import __version__

log = logging.getLogger(__name__)
T = TypeVar("T")

CLASSIFIER_FILE = "classifier.pkl"
MAPPING_FILE = "person_id_mapping.json"
CONFIG_FILE = "embedding_config.json"
METRICS_FILE = "metrics.json"
VERSION_FILE = "version.txt"
TRAINING_SET_FILE = "training_set.json"
OPEN_SET_FILE = "open_set.npz"  # the open-set rule; absent in models published before it
QUALITY_GATE_FILE = "quality_gate.json"  # the quality gate; absent before it, or too few faces
MANIFEST_FILE = "manifest.json"
ARTIFACT_FILES = (
    CLASSIFIER_FILE,
    MAPPING_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    VERSION_FILE,
    TRAINING_SET_FILE,
)
OPTIONAL_FILES = (OPEN_SET_FILE, QUALITY_GATE_FILE)
CURRENT = "current"
HISTORY = "history"
PICKLE_PROTOCOL = 5
LOAD_ATTEMPTS = 5


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_version(now: dt.datetime | None = None) -> str:
    """Sortable by publish time: UTC timestamp with microseconds, plus a short uuid."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


def sklearn_version() -> str:
    """The installed scikit-learn's version, without importing it (0.6 s)."""
    try:
        return importlib.metadata.version("scikit-learn")
    except importlib.metadata.PackageNotFoundError:  # not installed as a distribution
        import sklearn

        return str(sklearn.__version__)


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


@dataclass(frozen=True)
class Bundle:
    """One published model version, as read from disk (after the integrity checks)."""

    version: str
    directory: Path
    classifier: Any
    person_ids: list[Any]
    embedding_config: dict[str, Any]
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    training_set: dict[int, Any]
    open_set: OpenSetRule | None = None  # None: published before the open-set rule
    quality_gate: QualityGate | None = None  # None: published before it, or too few faces


# --- the files of a version ---------------------------------------------------------


def render_files(
    classifier: Any,
    person_ids: list[Any],
    embedding_config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    version: str,
    training_set: Sequence[tuple[int, Any]] = (),
    open_set: OpenSetRule | None = None,
    quality_gate: QualityGate | None = None,
) -> dict[str, bytes]:
    """The bytes of every artifact file, manifest included. Deterministic but for
    version.txt, metrics' timestamp and the manifest that records them."""
    files = {
        CLASSIFIER_FILE: pickle.dumps(classifier, protocol=PICKLE_PROTOCOL),
        MAPPING_FILE: json_bytes(person_ids),
        CONFIG_FILE: json_bytes(dict(embedding_config)),
        METRICS_FILE: json_bytes(dict(metrics)),
        VERSION_FILE: f"{version}\nfacestore {__version__}\n".encode(),
        # (face_id, person_id) pairs the model saw: what the daemon's retrain policy diffs
        TRAINING_SET_FILE: json.dumps([list(p) for p in training_set]).encode(),
    }
    if open_set is not None:
        files[OPEN_SET_FILE] = open_set.to_bytes()
    if quality_gate is not None:
        files[QUALITY_GATE_FILE] = quality_gate.to_bytes()
    manifest = {
        "version": version,
        "files": {name: sha256_bytes(data) for name, data in files.items()},
        "sklearn": sklearn_version(),
        "numpy": np.__version__,
        "facestore": __version__,
    }
    files[MANIFEST_FILE] = json_bytes(manifest)
    return files


# --- reading ----------------------------------------------------------------------


def list_versions(model_dir: Path) -> list[str]:
    """Published versions, oldest first."""
    history = model_dir / HISTORY
    if not history.is_dir():
        return []
    return sorted(p.name for p in history.iterdir() if p.is_dir() and not p.name.startswith("."))


def current_version(model_dir: Path) -> str | None:
    link = model_dir / CURRENT
    if not link.is_symlink():
        return None
    return Path(os.readlink(link)).name


def read_json(directory: Path, name: str) -> Any:
    return json.loads((directory / name).read_bytes())


def check_integrity(model_dir: Path, directory: Path, top_level: bool = False) -> dict[str, Any]:
    """Verify presence, hashes and sklearn version of one version directory.

    With `top_level`, model/<file> entries that are no longer our symlinks (a file
    copied over one) are checked against the same manifest.
    """
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ModelIntegrityError(
            f"Model {directory.name} in {model_dir} has no {MANIFEST_FILE}, so its integrity "
            "cannot be checked. Run 'facestore retrain' to publish a new model."
        )
    try:
        manifest = json.loads(manifest_path.read_bytes())
        expected_files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelIntegrityError(
            f"The manifest of model {directory.name} is damaged ({exc}). "
            "Run 'facestore retrain', or 'facestore model rollback' to an earlier version."
        ) from exc
    for name in model_files(expected_files):
        candidates = [directory / name]
        top = model_dir / name
        if top_level and top.exists() and not top.is_symlink():
            candidates.append(top)
        for path in candidates:
            if not path.is_file():
                raise ModelIntegrityError(
                    f"Model {directory.name} is missing {name}. Run 'facestore retrain', or "
                    "'facestore model rollback' to an earlier version."
                )
            if sha256_bytes(path.read_bytes()) != expected_files.get(name):
                raise ModelIntegrityError(
                    f"Integrity check failed: {path} does not match the sha256 in the "
                    f"manifest of model {directory.name}; the file was changed or damaged. "
                    "Run 'facestore retrain', or 'facestore model rollback' to an earlier version."
                )
    built_with = str(manifest.get("sklearn", "unknown"))
    installed = sklearn_version()
    if minor(built_with) != minor(installed):
        raise ModelIncompatibleError(
            f"Model {directory.name} was built with scikit-learn {built_with}, but "
            f"{installed} is installed; unpickling across versions is unsafe. "
            f"Run 'facestore retrain' with this scikit-learn, or install scikit-learn "
            f"{minor(built_with)}.*."
        )
    return dict(manifest)


def model_files(manifest_files: Mapping[str, Any]) -> tuple[str, ...]:
    """The files a version must have: the fixed set, plus the optional ones it lists."""
    return (*ARTIFACT_FILES, *(n for n in OPTIONAL_FILES if n in manifest_files))


def resolve_version_dir(model_dir: Path, version: str | None = None) -> Path:
    if version is None:
        version = current_version(model_dir)
        if version is None:
            raise ModelNotFoundError(
                f"No published model in {model_dir}. Run 'facestore retrain' (or "
                f"'facestore train') first, or pass {cite(MODEL_DIR)}."
            )
    directory = model_dir / HISTORY / version
    if not directory.is_dir():
        raise ModelNotFoundError(
            f"Model version {version} is not in {model_dir / HISTORY}. "
            "Run 'facestore model list' to see the published versions."
        )
    return directory


def load_bundle(model_dir: Path, version: str | None = None) -> Bundle:
    """Load and check one version (default: current). Unpickles only after every check.

    If a concurrent publish prunes the version being read, the new current one is read.
    """
    if version is not None:
        return _load_version(model_dir, version)
    for _ in range(LOAD_ATTEMPTS - 1):
        resolved = current_version(model_dir)
        try:
            return _load_version(model_dir, None)
        except (OSError, ModelNotFoundError, ModelIntegrityError):
            if resolved is None or current_version(model_dir) == resolved:
                raise
            log.debug("Model %s was replaced while loading; loading the new one", resolved)
    return _load_version(model_dir, None)


def _load_version(model_dir: Path, version: str | None) -> Bundle:
    directory = resolve_version_dir(model_dir, version)
    manifest = check_integrity(model_dir, directory, top_level=version is None)
    blobs = {name: (directory / name).read_bytes() for name in model_files(manifest["files"])}
    if any(sha256_bytes(data) != manifest["files"][n] for n, data in blobs.items()):
        raise ModelIntegrityError(  # changed between the check and the read
            f"Model {directory.name} changed while it was being loaded. Try again."
        )
    return Bundle(
        version=directory.name,
        directory=directory,
        classifier=pickle.loads(blobs[CLASSIFIER_FILE]),
        person_ids=json.loads(blobs[MAPPING_FILE]),
        embedding_config=json.loads(blobs[CONFIG_FILE]),
        metrics=json.loads(blobs[METRICS_FILE]),
        manifest=manifest,
        training_set={int(f): p for f, p in json.loads(blobs[TRAINING_SET_FILE])},
        open_set=_read_optional(
            directory, blobs.get(OPEN_SET_FILE), OpenSetRule.from_bytes, "an open-set rule"
        ),
        quality_gate=_read_optional(
            directory, blobs.get(QUALITY_GATE_FILE), QualityGate.from_bytes, "a quality gate"
        ),
    )


def _read_optional(
    directory: Path, data: bytes | None, read: Callable[[bytes], T], what: str
) -> T | None:
    """An optional file of the version (absent in older models), read by `read`; a file
    this facestore cannot read is ModelIncompatibleError."""
    if data is None:
        return None
    try:
        return read(data)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ModelIncompatibleError(
            f"Model {directory.name} has {what} this facestore cannot read ({exc}). "
            "Run 'facestore retrain' to publish a model with this version."
        ) from exc
