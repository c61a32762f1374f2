"""What the daemon serves: the embedder of the active space (or none) and the current
model. It follows another process's reembed (a new active space) and publish or
rollback (a new current model), and refuses a model of another space."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from facestore import artifacts
from facestore.backbones import Backbone, Space, space_of
from facestore.daemon.options import WatchOptions
from facestore.daemon.telemetry import Telemetry
from facestore.embedding import Embedder
from facestore.errors import ModelError
from facestore.predict import Predictor
from facestore.store import Store

log = logging.getLogger(__name__)


class Serving:
    def __init__(
        self,
        store: Store,
        model_dir: Path,
        options: WatchOptions,
        configured: Backbone | None,
        stop: threading.Event,
        telemetry: Telemetry,
    ) -> None:
        self.store = store
        self.model_dir = model_dir
        self.options = options
        self.configured = configured  # the backbone `watch` was started with
        self.stop = stop
        self.telemetry = telemetry
        self.backbone: Backbone | None = None
        self.space: Space | None = None
        self.embedder: Embedder | None = None
        self.predictor: Predictor | None = None
        self._released: str | None = None  # the version let go of while a retrain runs
        self._warned: set[str] = set()

    def start(self) -> None:
        """Choose the embedder of the active space and load the current model."""
        self._serve(*self._choose_backbone())
        self.load_model()
        if self.predictor is None:
            log.info("No model to serve yet: suggestions start with the first retrain")

    def close(self) -> None:
        if self.embedder is not None:
            self.embedder.close()
            self.embedder = None

    def follow_active_space(self) -> bool:
        """After a reembed elsewhere activates another space, serve that one. Changed?"""
        active = self.store.spaces.active()
        if active is not None and (
            self.space is None or active.config_hash != self.space.config_hash
        ):
            if self.space is not None:
                log.info("The active space is now %s", active.label)
            self._serve(*self._choose_backbone())
            return True
        return False

    def release_model(self) -> None:
        """Let go of the served model while a retrain runs in a child process (the loop
        waits for it, so nothing is served meanwhile): its memory goes to the child.
        The next load_model() loads the current model again."""
        if self.predictor is not None:
            self._released, self.predictor = self.predictor.version, None

    def load_model(self) -> bool:
        """Serve the current model if it is new and of the active space. A new one?
        (The model released for a retrain that published nothing, back: not new.)"""
        current = artifacts.current_version(self.model_dir)
        if current is None or (self.predictor and self.predictor.version == current):
            return False
        try:
            predictor = Predictor(artifacts.load_bundle(self.model_dir))
        except ModelError as exc:
            keeping = self.predictor.version if self.predictor else "none"
            log.error("Refusing model %s: %s Keeping model %s.", current, exc, keeping)
            return False
        if self.space and predictor.space_hash != self.space.config_hash:
            self._warn_once(
                f"model-space-{current}",
                "Model %s was trained in space %s, not the active %s; not using it. Run "
                "'facestore retrain'.",
                current,
                predictor.space_hash[:12],
                self.space.label,
            )
            return False
        self.predictor = predictor
        released, self._released = self._released, None
        if predictor.version == released:
            return False
        log.info("Model %s loaded", predictor.version)
        self.telemetry.model_served(
            predictor.version,
            predictor.bundle.metrics.get("accuracy"),
            self.space.label if self.space else predictor.space_hash[:12],
        )
        return True

    def _serve(self, backbone: Backbone | None, space: Space | None) -> None:
        """Embed with this backbone (one Embedder for the process), or not at all."""
        if backbone is not self.backbone:
            self.close()
            if backbone is not None:
                self.embedder = Embedder(
                    self.store,
                    backbone,
                    batch_size=self.options.batch_size,
                    lease_seconds=self.options.lease,
                    stop=self.stop,
                    on_batch=self.telemetry.batch,
                )
        self.backbone, self.space = backbone, space
        self.telemetry.loaded("backbone", backbone is not None)

    def _choose_backbone(self) -> tuple[Backbone | None, Space | None]:
        """The embedder of the active space, or None (keep serving without embedding)."""
        active = self.store.spaces.active()
        if self.configured is None:
            return None, active
        configured = space_of(self.configured)
        if active is not None and configured.config_hash != active.config_hash:
            self._warn_once(
                "space",
                "The configured backbone gives space %s, but the active space is %s. Not "
                "embedding; still serving the active space. Run 'facestore reembed' to move.",
                configured.label,
                active.label,
            )
            return None, active
        return self.configured, active or configured

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)
