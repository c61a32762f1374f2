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

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import pickle
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sklearn

from facestore import __version__
from facestore.errors import ModelIncompatibleError, ModelIntegrityError, ModelNotFoundError
from facestore.openset import OpenSetRule
from facestore.timestamps import normalise

log = logging.getLogger(__name__)

CLASSIFIER_FILE = "classifier.pkl"
MAPPING_FILE = "person_id_mapping.json"
CONFIG_FILE = "embedding_config.json"
METRICS_FILE = "metrics.json"
VERSION_FILE = "version.txt"
TRAINING_SET_FILE = "training_set.json"
OPEN_SET_FILE = "open_set.npz"  # the open-set rule; absent in models published before it
MANIFEST_FILE = "manifest.json"
ARTIFACT_FILES = (
    CLASSIFIER_FILE,
    MAPPING_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    VERSION_FILE,
    TRAINING_SET_FILE,
)
OPTIONAL_FILES = (OPEN_SET_FILE,)
CURRENT = "current"
HISTORY = "history"
DEFAULT_KEEP = 5
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


# --- publishing -----------------------------------------------------------------


@contextlib.contextmanager
def publish_lock(model_dir: Path) -> Iterator[None]:
    """Serialise publishers on this machine (rollback and retrain alike)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def render_files(
    classifier: Any,
    person_ids: list[Any],
    embedding_config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    version: str,
    training_set: Sequence[tuple[int, Any]] = (),
    open_set: OpenSetRule | None = None,
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
    manifest = {
        "version": version,
        "files": {name: sha256_bytes(data) for name, data in files.items()},
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "facestore": __version__,
    }
    files[MANIFEST_FILE] = json_bytes(manifest)
    return files


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _point_current(model_dir: Path, version: str) -> None:
    tmp_link = model_dir / f".current-{uuid.uuid4().hex}"
    os.symlink(Path(HISTORY) / version, tmp_link)
    os.replace(tmp_link, model_dir / CURRENT)
    for name in (*ARTIFACT_FILES, *OPTIONAL_FILES, MANIFEST_FILE):
        link = model_dir / name
        target = Path(CURRENT) / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        tmp = model_dir / f".{name}-{uuid.uuid4().hex}"
        os.symlink(target, tmp)
        os.replace(tmp, link)
    _fsync_dir(model_dir)


def publish(
    model_dir: Path,
    classifier: Any,
    person_ids: list[Any],
    embedding_config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    keep: int = DEFAULT_KEEP,
    version: str | None = None,
    training_set: Sequence[tuple[int, Any]] = (),
    switch: Callable[[Callable[[], None]], None] | None = None,
    open_set: OpenSetRule | None = None,
) -> str:
    """Write a new version and make it current atomically. Returns the version.

    `switch`, if given, is called with the function that makes the version current,
    so a caller can do that inside its own database transaction (reembed activates
    the new space that way). If `switch` raises, the previous version stays current.
    """
    version = version or new_version()
    files = render_files(
        classifier, person_ids, embedding_config, metrics, version, training_set, open_set
    )
    history = model_dir / HISTORY
    with publish_lock(model_dir):
        history.mkdir(parents=True, exist_ok=True)
        staging = history / f".tmp-{version}"
        staging.mkdir()
        for name, data in files.items():
            _write_synced(staging / name, data)
        _fsync_dir(staging)
        os.rename(staging, history / version)
        _fsync_dir(history)
        previous = current_version(model_dir)

        def make_current() -> None:
            _point_current(model_dir, version)

        if switch is None:
            make_current()
        else:
            try:
                switch(make_current)
            except BaseException:
                if previous is not None and current_version(model_dir) == version:
                    _point_current(model_dir, previous)
                raise
        _prune(model_dir, keep)
    log.info("Published model %s to %s", version, model_dir)
    return version


def _prune(model_dir: Path, keep: int) -> None:
    history = model_dir / HISTORY
    current = current_version(model_dir)
    for leftover in history.glob(".tmp-*"):  # from publishes that were killed
        shutil.rmtree(leftover, ignore_errors=True)
    versions = list_versions(model_dir)
    for old in versions[: max(0, len(versions) - keep)]:
        if old != current:
            shutil.rmtree(history / old, ignore_errors=True)


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


def _read_json(directory: Path, name: str) -> Any:
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
    if minor(built_with) != minor(sklearn.__version__):
        raise ModelIncompatibleError(
            f"Model {directory.name} was built with scikit-learn {built_with}, but "
            f"{sklearn.__version__} is installed; unpickling across versions is unsafe. "
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
                "'facestore train') first, or pass --model-dir."
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
        open_set=_read_open_set(directory, blobs.get(OPEN_SET_FILE)),
    )


def _read_open_set(directory: Path, data: bytes | None) -> OpenSetRule | None:
    if data is None:
        return None
    try:
        return OpenSetRule.from_bytes(data)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelIncompatibleError(
            f"Model {directory.name} has an open-set rule this facestore cannot read ({exc}). "
            "Run 'facestore retrain' to publish a model with this version."
        ) from exc


def published_summary(model_dir: Path) -> dict[str, Any] | None:
    """{"version", "accuracy"} of the current model, or None when there is none."""
    version = current_version(model_dir)
    if version is None:
        return None
    try:
        metrics = _read_json(model_dir / HISTORY / version, METRICS_FILE)
    except (OSError, ValueError):
        metrics = {}
    return {"version": version, "accuracy": metrics.get("accuracy")}


def history(model_dir: Path) -> list[dict[str, Any]]:
    current = current_version(model_dir)
    rows = []
    for version in reversed(list_versions(model_dir)):
        try:
            metrics = _read_json(model_dir / HISTORY / version, METRICS_FILE)
            config = _read_json(model_dir / HISTORY / version, CONFIG_FILE)
        except (OSError, ValueError):
            metrics, config = {}, {}
        rows.append(
            {
                "version": version,
                "current": version == current,
                "created_at": normalise(metrics.get("created_at")),
                "classifier": metrics.get("classifier"),
                "accuracy": metrics.get("accuracy"),
                "n_train": metrics.get("n_train"),
                "classes_kept": metrics.get("classes_kept"),
                "space": config.get("config_hash"),
            }
        )
    return rows


def rollback(model_dir: Path, version: str | None = None) -> str:
    """Make `version` (default: the one published before the current one) current."""
    with publish_lock(model_dir):
        versions = list_versions(model_dir)
        current = current_version(model_dir)
        if version is None:
            older = [v for v in versions if current is None or v < current]
            if not older:
                raise ModelNotFoundError(
                    f"There is no version older than {current} in {model_dir / HISTORY}. "
                    "Run 'facestore model list' to see the published versions."
                )
            version = older[-1]
        check_integrity(model_dir, resolve_version_dir(model_dir, version))
        _point_current(model_dir, version)
    log.info("Rolled back %s to model %s", model_dir, version)
    return version
