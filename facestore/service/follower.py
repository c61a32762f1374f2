"""The model the service answers with: loaded at start, and replaced when `retrain`,
the daemon or `model rollback` moves model/current. A new version is loaded and checked
(its files' hashes, its space against the backbone) beside the one being served, and
swapped in whole, so a request is answered by the old model or the new one, never by
half of one. A version that fails its checks is not served: the old one stays, with a
log line and a count in /metrics, until current moves again."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

from PIL import Image

from facestore.artifacts import current_version, load_bundle
from facestore.config import BackboneSettings
from facestore.errors import FacestoreError, ModelNotFoundError
from facestore.predict import Predictor
from facestore.service.telemetry import ServiceTelemetry

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # how often model/current is looked at (the issue allows 5 s)


class ModelFollower:
    def __init__(
        self,
        model_dir: Path,
        settings: BackboneSettings,
        telemetry: ServiceTelemetry,
        poll: float = POLL_SECONDS,
    ) -> None:
        self.model_dir = model_dir
        self.settings = settings
        self.telemetry = telemetry
        self.poll = poll
        self.current: Predictor | None = None  # swapped whole; read without a lock
        self.refused: str | None = None  # the version that failed its checks last
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="facestore-model", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def check(self, strict: bool = False) -> None:
        """Serve model/current's version if it is new and passes its checks; strict:
        raise why it does not (at start, where the operator is there to read it)."""
        version = current_version(self.model_dir)
        served = self.current.version if self.current else None
        if version is None or version in (served, self.refused):
            return
        try:
            predictor = self._load()
        except FacestoreError as exc:
            if strict:
                raise
            self.refused = version
            self.telemetry.refused.inc()
            log.warning("Not serving model %s, still %s: %s", version, served, exc)
            return
        self.current, self.refused = predictor, None
        backbone = str(predictor.bundle.embedding_config.get("backbone"))
        self.telemetry.serving(predictor.version, backbone)
        log.info("Serving model %s (%s)", predictor.version, backbone)

    def _load(self) -> Predictor:
        bundle = load_bundle(self.model_dir)
        old = self.current
        if old is not None and old.space_hash == bundle.embedding_config.get("config_hash"):
            return Predictor(bundle, backbone=old.backbone)  # the same space: its backbone
        name = str(bundle.embedding_config.get("backbone", self.settings.name))
        predictor = Predictor(bundle, settings=replace(self.settings, name=name))
        predictor.backbone.embed_images([Image.new("RGB", (160, 160), (128, 128, 128))])  # warm
        return predictor

    def _follow(self) -> None:
        waiting_said = False
        while not self._stop.is_set():
            try:
                self.check()
            except ModelNotFoundError:
                pass
            except Exception:  # noqa: BLE001 - the service stays up on the old model
                log.exception("Looking for a new model failed; trying again")
            unpublished = current_version(self.model_dir) is None
            if self.current is None and unpublished and not waiting_said:
                log.warning(
                    "No published model in %s yet: not ready until 'facestore train' or "
                    "'facestore retrain' publishes one",
                    self.model_dir,
                )
                waiting_said = True
            self._stop.wait(self.poll)
