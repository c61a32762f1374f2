"""The daemon's loop: `start()` loads what it serves, `run()` reconciles until stopped.

Each reconcile embeds in slices; after each slice it follows a model another
process published, evaluates the retrain policy and writes suggestions, so a
backlog starves none of them. Several daemons share the work through leases
(facestore.store.queue); only one retrains at a time (facestore.locks).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa

from facestore import artifacts
from facestore.backbones import Backbone, Space, space_of
from facestore.daemon.options import VERIFIED_SHARE, WatchOptions
from facestore.daemon.pairs import TrainingPairs
from facestore.daemon.policy import RetrainPolicy, RetrainScheduler
from facestore.daemon.retraining import retrain_if_due
from facestore.daemon.rolling import RollingCheck
from facestore.daemon.suggester import Suggester
from facestore.daemon.systemd import Notifier
from facestore.daemon.telemetry import Telemetry
from facestore.daemon.wakeups import DataVersionProbe, wake_source
from facestore.embedding import Embedder
from facestore.errors import ModelError
from facestore.grouping import Clusterer
from facestore.predict import Predictor
from facestore.store import IdRanges, Store

log = logging.getLogger(__name__)

BEAT_SECONDS = 5.0  # the idle loop shows it is alive at least this often
RETRAIN_ALLOWANCE = 1800.0  # seconds a retrain may run without a beat (then: hung)
NO_MODEL: Mapping[int, Any] = MappingProxyType({})  # the training set before any model


class Daemon:
    def __init__(
        self,
        store: Store,
        model_dir: Path,
        options: WatchOptions,
        backbone: Backbone | None,
        clock: Callable[[], float] = time.monotonic,
        telemetry: Telemetry | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        """No I/O here: `start()` (or the first reconcile) reads the database and model."""
        self.store = store
        self.model_dir = model_dir
        self.options = options
        self.clock = clock
        self.telemetry = telemetry or Telemetry(options.interval)
        self.notifier = notifier or Notifier(env={})
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.scheduler = RetrainScheduler(
            RetrainPolicy(
                options.retrain_min_changes, options.retrain_delay, options.retrain_cooldown
            )
        )
        self.suggester = Suggester(store, options.min_confidence, options.min_quality)
        self.clusterer = Clusterer(
            store, options.cluster_distance, options.cluster_min_size, clock=clock
        )
        self._recluster = True  # a full re-cluster at start and after each new model
        self._read_all = True  # the next suggestion pass reads the unverified faces in _checking
        self._checking: IdRanges | None = None  # what this timer pass checks (None: all)
        self._rolling = RollingCheck(phase=random.random())  # workers check different ids
        # The retrain policy's training pairs: read whole once, then from the change log,
        # and only when labels may have changed (a wake-up by the app, verified faces
        # embedded here, another space); otherwise reused, or skipped when nothing waits.
        self._labels_changed = True
        self.training_pairs = TrainingPairs(store)
        self._pairs: dict[int, Any] | None = None
        self._pairs_for: tuple[str, int] | None = None  # (space, id of the trained set)
        self._commits: DataVersionProbe | None = None  # SQLite: did anyone else commit?
        self._embedded_unverified: set[int] = set()  # since the last suggestion pass
        self.predictor: Predictor | None = None
        self.backbone: Backbone | None = None
        self.space: Space | None = None
        self.embedder: Embedder | None = None
        self._configured = backbone
        self._started = False
        self._warned: set[str] = set()

    def start(self) -> None:
        """Choose the embedder of the active space and load the current model (once)."""
        if self._started:
            return
        self._started = True
        self._serve(*self._choose_backbone(self._configured))
        self._load_model()
        if self.predictor is None:
            log.info("No model to serve yet: suggestions start with the first retrain")

    def close(self) -> None:
        if self.embedder is not None:
            self.embedder.close()
            self.embedder = None
        if self._commits is not None:
            self._commits.close()
            self._commits = None

    def _others_committed(self) -> bool:
        """On a timer pass: may the labels have changed? SQLite tells (data_version);
        on PostgreSQL a timer pass assumes so (its wake-ups are LISTEN/NOTIFY)."""
        if self.store.engine.dialect.name != "sqlite":
            return True
        if self._commits is None:
            self._commits = DataVersionProbe(self.store.engine)
            return True
        return self._commits.changed()

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

    def request_stop(self) -> None:
        if not self.stop.is_set():
            self.notifier.send("STOPPING=1")
        self.stop.set()
        self.wake.set()

    # -- what it serves -------------------------------------------------------------

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _choose_backbone(self, backbone: Backbone | None) -> tuple[Backbone | None, Space | None]:
        """The embedder of the active space, or None (keep serving without embedding)."""
        active = self.store.spaces.active()
        if backbone is None:
            return None, active
        configured = space_of(backbone)
        if active is not None and configured.config_hash != active.config_hash:
            self._warn_once(
                "space",
                "The configured backbone gives space %s, but the active space is %s. Not "
                "embedding; still serving the active space. Run 'facestore reembed' to move.",
                configured.label,
                active.label,
            )
            return None, active
        return backbone, active or configured

    def _load_model(self) -> None:
        current = artifacts.current_version(self.model_dir)
        if current is None or (self.predictor and self.predictor.version == current):
            return
        try:
            predictor = Predictor(artifacts.load_bundle(self.model_dir))
        except ModelError as exc:
            keeping = self.predictor.version if self.predictor else "none"
            log.error("Refusing model %s: %s Keeping model %s.", current, exc, keeping)
            return
        if self.space and predictor.space_hash != self.space.config_hash:
            self._warn_once(
                f"model-space-{current}",
                "Model %s was trained in space %s, not the active %s; not using it. Run "
                "'facestore retrain'.",
                current,
                predictor.space_hash[:12],
                self.space.label,
            )
            return
        self.predictor = predictor
        log.info("Model %s loaded", predictor.version)
        self.telemetry.model_served(
            predictor.version,
            predictor.bundle.metrics.get("accuracy"),
            self.space.label if self.space else predictor.space_hash[:12],
        )
        if self.options.suggestions:
            self.suggest(replace_all=True)
            self._recluster = True

    def _follow_active_space(self) -> bool:
        """After a reembed elsewhere activates another space, serve that one. Changed?"""
        active = self.store.spaces.active()
        if active is not None and (
            self.space is None or active.config_hash != self.space.config_hash
        ):
            if self.space is not None:
                log.info("The active space is now %s", active.label)
            self._serve(*self._choose_backbone(self._configured))
            return True
        return False

    # -- one pass ---------------------------------------------------------------------

    def reconcile(self, scan: bool = True) -> int:
        """One pass. scan=False (woken by a change): trust the queue the triggers fill.

        The timer's passes are the safety net: the first checks every face, later ones a
        rolling slice of ids and the rows added since (facestore.daemon.rolling), sweeping
        orphans there too.
        The embedding is done in slices of at most `slice_seconds` (plus the batch in
        progress): after each slice the model is reloaded if another worker published
        one, the retrain policy is evaluated and suggestions are written, so that none
        of them waits for a backlog to clear.
        """
        self.start()
        started = time.perf_counter()
        embedded = slices = 0
        followed = self._follow_active_space()
        scan = followed or scan
        if followed or not scan or self._others_committed():
            self._labels_changed = True  # the app wrote, or another space
        if scan:
            self._checking = self._rolling.next(self.store.library.highest_face_id())
            self.store.cache.sweep_orphans(self._checking)
            self.store.changes.prune()
            self._recheck_pairs(self._checking)
            self._read_all = True
        if self.embedder is None or self.space is None:
            self._between_slices()
            return 0
        more = True
        while more and not self.stop.is_set():
            more, done = self._embed_slice(scan=scan and slices == 0, scan_ids=self._checking)
            embedded += done
            slices += 1
            if self.stop.is_set():
                return embedded
            self._between_slices()
        log.debug(
            "Reconciled in %.0f ms (%d embedded in %d slices, %s)",
            1000 * (time.perf_counter() - started),
            embedded,
            slices,
            "scan" if scan else "queue only",
        )
        return embedded

    def _embed_slice(self, scan: bool, scan_ids: IdRanges | None = None) -> tuple[bool, int]:
        """Embed for about one slice: verified faces first, then at least one batch of
        unverified ones. Returns (work left, faces embedded)."""
        assert self.embedder is not None and self.space is not None
        now = time.monotonic()
        end = now + self.options.slice_seconds
        shares = [(True, end)]
        if self.options.suggestions:
            shares = [(True, now + VERIFIED_SHARE * self.options.slice_seconds), (False, end)]
        more, embedded = False, 0
        for verified, deadline in shares:
            if self.stop.is_set():
                break
            report = self.embedder.run_pass(
                self.space,
                verified=verified,
                scan=scan,
                sweep=False,
                deadline=deadline,
                scan_ids=scan_ids,
            )
            more = more or report.more
            embedded += report.embedded
            if not verified:
                self._embedded_unverified.update(report.written)
            elif report.written:
                self._labels_changed = True  # new training faces
        return more, embedded

    def _between_slices(self) -> None:
        self.telemetry.beat()
        self._load_model()  # another process may have published or rolled back
        if self.options.retrain:
            self.maybe_retrain()
        if not self.options.suggestions or self.space is None:
            return
        only = None if self._read_all else set(self._embedded_unverified)
        checking = self._checking
        self._read_all = False
        self._embedded_unverified.clear()
        if self.predictor is not None:
            outcome = self.suggester.suggest(
                self.predictor, self.space.config_hash, only=only, ids=checking
            )
            new, unverified = outcome.unnamed, outcome.unverified
            self.telemetry.suggestions.inc(outcome.written)
            if outcome.low_quality or outcome.unverified is not None:
                self.telemetry.low_quality.set(self.store.quality.count(self.space.config_hash))
        else:  # no model: every unverified face is unknown
            rows = self.store.suggestions.unverified_vectors(
                self.space.config_hash, only, None if only is not None else checking
            )
            new = {row.face_id: row.vector for row in rows}
            unverified = None if only is not None or checking is not None else frozenset(new)
        if self.options.clusters:
            held = self._pairs_for is not None and self._pairs_for[0] == self.space.config_hash
            pairs = self._pairs if held else None  # kept current by the retrain policy
            self.clusterer.update(self.space, self._recluster, new, unverified, pairs)
            self._recluster = False

    def _recheck_pairs(self, faces: IdRanges | None) -> None:
        """PostgreSQL commits log rows out of seq order; the rolling slice re-reads its
        pairs so that a row the log reader passed over is caught within one period.
        SQLite has one writer at a time: its log is in commit order."""
        sqlite = self.store.engine.dialect.name == "sqlite"
        if faces is None or self.space is None or not self.options.retrain or sqlite:
            return
        self.training_pairs.recheck(self.space.config_hash, faces)

    def maybe_retrain(self) -> None:
        if self.space is None:
            return
        trained = self.predictor.bundle.training_set if self.predictor else NO_MODEL
        same = self._pairs_for == (self.space.config_hash, id(trained))
        if same and not self._labels_changed and self.scheduler.waiting_since is None:
            return  # nothing changed and nothing waits: no read at all
        other_space = self._pairs_for is None or self._pairs_for[0] != self.space.config_hash
        if self._labels_changed or self._pairs is None or other_space:
            self._pairs = self.training_pairs.current(self.space.config_hash)
            self._labels_changed = False
        self._pairs_for = (self.space.config_hash, id(trained))
        with self.telemetry.busy("retrain", RETRAIN_ALLOWANCE):
            published = retrain_if_due(
                self.scheduler,
                self.store,
                self.model_dir,
                self.options.classifier,
                self.space,
                trained,
                self.clock(),
                self.telemetry,
                current=self._pairs,
                changes=self.training_pairs.differences(trained),
            )
        if published:
            self._load_model()

    def suggest(self, replace_all: bool = False) -> int:
        """Suggestions for unverified faces not yet considered by the current model."""
        if self.predictor is None or self.space is None:
            return 0
        written = self.suggester.suggest(
            self.predictor, self.space.config_hash, replace_all
        ).written
        self.telemetry.suggestions.inc(written)
        return written

    # -- the loop -----------------------------------------------------------------------

    def _safe_reconcile(self, scan: bool = True) -> None:
        """A database error (busy beyond the timeout, disk trouble, a statement the
        database refuses) is logged and the pass retried: the daemon keeps serving."""
        started = time.perf_counter()
        try:
            embedded = self.reconcile(scan)
        except sa.exc.DBAPIError as exc:
            log.error("Reconcile failed, retrying next interval: %s", exc.orig)
            self.telemetry.reconcile_failed(type(exc.orig).__name__, str(exc.orig).strip())
            return
        if not self.stop.is_set():
            self.telemetry.reconciled(embedded, time.perf_counter() - started)

    def run(self) -> None:
        """Reconcile now, then on every wake-up (debounced, confirmed) and every interval."""
        self.start()
        options = self.options
        with (
            contextlib.closing(self),
            wake_source(self.store.engine, options.poll, self.wake) as source,
        ):
            log.info(
                "Watching %s (%s, reconcile every %.0f s)",
                self.store.engine.url.render_as_string(hide_password=True),
                source.description,
                options.interval,
            )
            self.notifier.send("READY=1")
            self.notifier.start_watchdog(self.telemetry.alive)
            self._safe_reconcile()
            next_timer = self.clock() + options.interval
            while not self.stop.is_set():
                self.telemetry.beat()
                left = next_timer - self.clock()
                woke = self.wake.wait(max(0.0, min(left, BEAT_SECONDS)))
                if self.stop.is_set():
                    break
                if not woke and left > BEAT_SECONDS:
                    continue  # still waiting: beat again
                if woke:
                    self.stop.wait(options.debounce)
                    self.wake.clear()
                    if self.stop.is_set():
                        break
                    if not source.changed():
                        continue
                else:
                    next_timer = self.clock() + options.interval
                self._safe_reconcile(scan=not woke)
        self.telemetry.stopped()
        self.notifier.close()
        log.info("Stopped")
