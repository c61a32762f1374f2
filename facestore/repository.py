"""Published models in model/: versions are staged in history/, then made current.

    repo = ModelRepository(model_dir)
    staged = repo.stage(classifier, person_ids, embedding_config, metrics, ...)
    staged.make_current()          # atomic symlink swap; old versions pruned

`reembed` stages, opens a database transaction, activates the space and makes the
staged version current inside it, so model and space switch together. Publishers
are serialised by facestore.locks.publish_lock; readers never lock (see artifacts).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facestore.artifacts import (
    ARTIFACT_FILES,
    CONFIG_FILE,
    CURRENT,
    HISTORY,
    MANIFEST_FILE,
    METRICS_FILE,
    OPTIONAL_FILES,
    Bundle,
    check_integrity,
    current_version,
    list_versions,
    load_bundle,
    new_version,
    read_json,
    render_files,
    resolve_version_dir,
)
from facestore.errors import ModelNotFoundError
from facestore.locks import publish_lock
from facestore.openset import OpenSetRule
from facestore.quality import QualityGate
from facestore.settings import DEFAULT_KEEP
from facestore.timestamps import normalise
from facestore.training_settings import settings_from_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagedVersion:
    """A version written to history/ but not current yet."""

    repository: ModelRepository
    version: str

    def make_current(self) -> None:
        """Point current at this version (atomic), then prune old versions."""
        self.repository.point_current(self.version)
        self.repository.prune()
        log.info("Published model %s to %s", self.version, self.repository.model_dir)


class ModelRepository:
    def __init__(self, model_dir: Path, keep: int = DEFAULT_KEEP) -> None:
        self.model_dir = model_dir
        self.keep = keep

    def stage(
        self,
        classifier: Any,
        person_ids: list[Any],
        embedding_config: Mapping[str, Any],
        metrics: Mapping[str, Any],
        *,
        training_set: Sequence[tuple[int, Any]] = (),
        open_set: OpenSetRule | None = None,
        quality_gate: QualityGate | None = None,
        version: str | None = None,
    ) -> StagedVersion:
        """Write every file of a new version, fsynced, into history/ (not current yet)."""
        version = version or new_version()
        files = render_files(
            classifier,
            person_ids,
            embedding_config,
            metrics,
            version,
            training_set,
            open_set,
            quality_gate,
        )
        history = self.model_dir / HISTORY
        with publish_lock(self.model_dir):
            history.mkdir(parents=True, exist_ok=True)
            staging = history / f".tmp-{version}"
            staging.mkdir()
            for name, data in files.items():
                _write_synced(staging / name, data)
            _fsync_dir(staging)
            os.rename(staging, history / version)
            _fsync_dir(history)
        return StagedVersion(self, version)

    def publish(self, *args: Any, **kwargs: Any) -> str:
        """stage() and make_current() in one step; returns the version."""
        staged = self.stage(*args, **kwargs)
        staged.make_current()
        return staged.version

    def point_current(self, version: str) -> None:
        with publish_lock(self.model_dir):
            _point_current(self.model_dir, version)

    def prune(self) -> None:
        with publish_lock(self.model_dir):
            _prune(self.model_dir, self.keep)

    def current_version(self) -> str | None:
        return current_version(self.model_dir)

    def load(self, version: str | None = None) -> Bundle:
        return load_bundle(self.model_dir, version)

    def summary(self) -> dict[str, Any] | None:
        """The current model's `describe`, or None when there is none."""
        version = self.current_version()
        return self.describe(version) if version is not None else None

    def describe(self, version: str) -> dict[str, Any]:
        """One kept version as `model list`, `model show` and `status` print it: when,
        classifier, accuracy, sizes, space, and the training settings a retrain reuses.
        Reads JSON only; a version whose files cannot be read shows what it can."""
        directory = self.model_dir / HISTORY / version
        if not directory.is_dir():
            raise ModelNotFoundError(
                f"No model version {version!r} in {self.model_dir}. "
                "'facestore model list' shows the kept versions."
            )
        try:
            metrics = read_json(directory, METRICS_FILE)
            config = read_json(directory, CONFIG_FILE)
        except (OSError, ValueError):
            metrics, config = {}, {}
        open_set = metrics.get("open_set") or {}
        return {
            "version": version,
            "current": version == self.current_version(),
            "created_at": normalise(metrics.get("created_at")),
            "classifier": metrics.get("classifier"),
            "accuracy": metrics.get("accuracy"),
            "n_train": metrics.get("n_train"),
            "n_val": metrics.get("n_val"),
            "classes_kept": metrics.get("classes_kept"),
            "space": config.get("config_hash"),
            "backbone": config.get("backbone"),
            "unknown_threshold": open_set.get("threshold"),
            "settings": settings_from_metrics(metrics).as_json(),
        }

    def history(self) -> list[dict[str, Any]]:
        """Every kept version, newest first."""
        return [self.describe(v) for v in reversed(list_versions(self.model_dir))]

    def rollback(self, version: str | None = None) -> str:
        """Make `version` (default: the one published before the current one) current."""
        model_dir = self.model_dir
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


def _prune(model_dir: Path, keep: int) -> None:
    history = model_dir / HISTORY
    current = current_version(model_dir)
    for leftover in history.glob(".tmp-*"):  # from publishes that were killed
        shutil.rmtree(leftover, ignore_errors=True)
    versions = list_versions(model_dir)
    for old in versions[: max(0, len(versions) - keep)]:
        if old != current:
            shutil.rmtree(history / old, ignore_errors=True)
