"""`facestore reembed`: move the store to a new backbone with zero downtime.

The old space and its model keep serving while the new space is built. Only when
every verified face has a vector (or a recorded failure) in the new space is a
model trained there, published, and the space activated, in one step.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facestore.backbones import Backbone, Space, space_of
from facestore.embedding import BUILD, Embedder, ProgressCallback
from facestore.errors import ConfigurationError
from facestore.locks import retrain_lock
from facestore.repository import ModelRepository
from facestore.retrain import fit_and_stage, prepare
from facestore.store import Store
from facestore.training_settings import settings_for

log = logging.getLogger(__name__)

# Faces that arrive while a pass runs are embedded by the next pass; stop after this many.
MAX_PASSES = 5


@dataclass(frozen=True)
class ReembedReport:
    space: str
    embedded: int
    failed: int
    activated: bool
    model_version: str | None
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "embedded": self.embedded,
            "failed": self.failed,
            "activated": self.activated,
            "model_version": self.model_version,
            "seconds": round(self.seconds, 3),
        }


def build_space(
    store: Store,
    backbone: Backbone,
    *,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
) -> tuple[Space, int, int]:
    """Embed every verified face into the backbone's space, beside the active one.

    Resumable: a second run embeds only what is missing. Passes repeat until a pass
    finds nothing new, so faces added meanwhile are in the space before activation.
    """
    space = space_of(backbone)
    embedded = failed = 0
    with Embedder(store, backbone, batch_size=batch_size, stop=stop) as embedder:
        for _ in range(MAX_PASSES):
            report = embedder.run_pass(space, BUILD, progress=progress)
            embedded += report.embedded
            failed += report.failed
            if report.pending == 0 or embedder.stop.is_set():
                break
    return space, embedded, failed


def activate(store: Store, space: Space, model_dir: Path, classifier: str | None = None) -> str:
    """Train in the (complete) space, stage the model, then in one database transaction
    activate the space and make the model current: both switch, or neither. The
    current model's training settings carry over (the classifier unless given)."""
    missing = store.queue.count_pending(space.config_hash)
    if missing:
        raise ConfigurationError(
            f"Space {space.label} still lacks {missing} verified faces. Run "
            "'facestore reembed' with the same backbone and weights to finish it first."
        )
    settings = settings_for(model_dir, classifier=classifier)
    training = prepare(store, settings.classifier, space)
    repository = ModelRepository(model_dir, settings.keep)
    with retrain_lock(store.engine, model_dir):
        staged, _ = fit_and_stage(store, repository, training, settings)
        previous = repository.current_version()
        try:
            with store.transaction():
                store.spaces.activate(space)
                staged.make_current()  # just before the commit
        except BaseException:
            if previous is not None and repository.current_version() == staged.version:
                repository.point_current(previous)
            raise
    log.info("Activated space %s with model %s", space.label, staged.version)
    return staged.version


def reembed(
    store: Store,
    backbone: Backbone,
    model_dir: Path,
    *,
    batch_size: int | None = None,
    activate_space: bool = True,
    classifier: str | None = None,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
) -> ReembedReport:
    """Build the backbone's space beside the active one; then (activate_space) train
    there and switch. A set `stop` ends the build early and nothing is activated."""
    started = time.perf_counter()
    space, embedded, failed = build_space(
        store, backbone, batch_size=batch_size, progress=progress, stop=stop
    )
    active = store.spaces.active()
    version = None
    already_active = active is not None and active.config_hash == space.config_hash
    stopped = stop is not None and stop.is_set()
    if activate_space and not already_active and not stopped:
        version = activate(store, space, model_dir, classifier)
    return ReembedReport(
        space=space.config_hash,
        embedded=embedded,
        failed=failed,
        activated=version is not None,
        model_version=version,
        seconds=time.perf_counter() - started,
    )


def activate_recorded(
    store: Store, config_hash: str | None, model_dir: Path, classifier: str | None = None
) -> str:
    """The later switch after `reembed --no-activate`: the newest complete other space."""
    candidates = [s for s in store.spaces.summaries() if not s.active]
    if config_hash:
        candidates = [s for s in candidates if s.config_hash.startswith(config_hash)]
    if not candidates:
        raise ConfigurationError(
            "There is no inactive embedding space to activate. Build one with "
            "'facestore reembed --no-activate --weights NEW.pt'."
        )
    chosen = candidates[-1]
    space = store.spaces.get(chosen.config_hash)
    assert space is not None
    return activate(store, space, model_dir, classifier)
