"""The daemon's loop: `start()` loads what it serves, `run()` reconciles until stopped.

One reconcile, in named steps (rq's `work()` is the model):

    follow the active space -> note whether labels may have changed ->
    (timer) check a rolling slice -> embed a slice -> between slices: follow the
    model, maybe retrain, suggest and group -> next slice, until nothing is left

so a backlog starves none of them. Several daemons share the work through leases
(facestore.store.queue); only one retrains at a time (facestore.locks). When to
retrain is the RetrainTrigger's decision (facestore.daemon.trigger).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path

import sqlalchemy as sa

from facestore.backbones import Backbone, Space
from facestore.daemon.child_retrain import retrain_in_child
from facestore.daemon.full_pass import FullPass
from facestore.daemon.grouper import Grouper
from facestore.daemon.options import VERIFIED_SHARE, WatchOptions
from facestore.daemon.serving import Serving
from facestore.daemon.suggester import Suggester
from facestore.daemon.systemd import Notifier
from facestore.daemon.telemetry import Telemetry
from facestore.daemon.timer_checks import TimerChecks
from facestore.daemon.trigger import Retrain, RetrainTrigger, retrain_here
from facestore.daemon.wakeups import wake_source
from facestore.embedding import CHECK, QUEUE, Embedder
from facestore.memory import give_back_memory
from facestore.predict import Predictor
from facestore.store import Store

log = logging.getLogger(__name__)

BEAT_SECONDS = 5.0  # the idle loop shows it is alive at least this often
TRIM_AFTER_SECONDS = 1.0  # a pass that long may have freed much memory: give it back
NO_MODEL: dict[int, object] = {}  # the training set before any model


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
        retrain: Retrain | None = None,
    ) -> None:
        """retrain: how it runs (default: as options say; a child gets the served model's
        memory while it runs). No I/O here: start() reads the database and the model."""
        self.store = store
        self.options = options
        self.clock = clock
        self.telemetry = telemetry or Telemetry(options.interval)
        self.notifier = notifier or Notifier(env={})
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.serving = Serving(store, model_dir, options, backbone, self.stop, self.telemetry)
        if retrain is None:
            retrain = retrain_in_child if options.retrain_in_child else retrain_here
        release = self.serving.release_model if options.retrain_in_child else None
        self.trigger = RetrainTrigger(
            store, model_dir, options, self.telemetry, clock, self.stop, retrain, release
        )
        self.suggester = Suggester(store, options.min_confidence, options.min_quality)
        cut, least = options.cluster_distance, options.cluster_min_size
        self.grouper = Grouper(store, cut, least, clock, FullPass(store))
        self._recluster = True  # a full re-cluster at start and after each new model
        self._read_all = True  # the next suggestion pass reads the unverified faces checked
        self.timer = TimerChecks(store)
        self._embedded_unverified: set[int] = set()  # since the last suggestion pass
        self._started = False

    @property
    def predictor(self) -> Predictor | None:
        return self.serving.predictor

    @property
    def space(self) -> Space | None:
        return self.serving.space

    def start(self) -> None:
        """Choose the embedder of the active space and load the current model (once)."""
        if not self._started:
            self._started = True
            self.serving.start()

    def close(self) -> None:
        self.grouper.close()
        self.serving.close()
        self.timer.close()

    def request_stop(self) -> None:
        if not self.stop.is_set():
            self.notifier.send("STOPPING=1")
        self.stop.set()
        self.wake.set()

    # -- one pass ---------------------------------------------------------------------

    def reconcile(self, scan: bool = True) -> int:
        """One pass. scan=False (woken by a change): trust the queue the triggers fill.

        The timer's passes are the safety net: the first checks every face, later ones a
        rolling slice of ids and the rows added since (facestore.daemon.rolling), sweeping
        orphans there too. The embedding is done in slices of at most `slice_seconds`
        (plus the batch in progress); between slices the model is reloaded if another
        worker published one, the retrain trigger decides and suggestions are written.
        """
        self.start()
        started = time.perf_counter()
        moved = self.serving.follow_active_space()
        scan = moved or scan
        if moved or not scan or self.timer.others_committed():
            self.trigger.labels_may_have_changed()  # the app wrote, or another space
        if scan:
            self._check_slice()
        embedder = self.serving.embedder
        if embedder is None or self.space is None:
            self._between_slices()
            return 0
        embedded = self._embed_in_slices(embedder, self.space, scan)
        log.debug(
            "Reconciled in %.0f ms (%d embedded, %s)",
            1000 * (time.perf_counter() - started),
            embedded,
            "scan" if scan else "queue only",
        )
        return embedded

    def _check_slice(self) -> None:
        """The timer's safety net over this pass's rolling slice of ids."""
        checking, space = self.timer.next_slice(), self.space
        # SQLite's change log is in commit order; PostgreSQL's slice is read again
        if self.options.retrain and not self.timer.sqlite and space and checking is not None:
            self.trigger.recheck(space, checking)
        self._read_all = True

    def _embed_in_slices(self, embedder: Embedder, space: Space, scan: bool) -> int:
        embedded, first, more = 0, True, True
        while more and not self.stop.is_set():
            more, done = self._embed_slice(embedder, space, scan and first)
            embedded += done
            first = False
            if self.stop.is_set():
                break
            self._between_slices()
        return embedded

    def _embed_slice(self, embedder: Embedder, space: Space, scan: bool) -> tuple[bool, int]:
        """Embed for about one slice: verified faces first, then at least one batch of
        unverified ones. Returns (work left, faces embedded)."""
        now = time.monotonic()
        end = now + self.options.slice_seconds
        shares = [(True, end)]
        if self.options.suggestions:
            shares = [(True, now + VERIFIED_SHARE * self.options.slice_seconds), (False, end)]
        more, embedded = False, 0
        for verified, deadline in shares:
            if self.stop.is_set():
                break
            report = embedder.run_pass(
                space,
                CHECK if scan else QUEUE,
                verified=verified,
                deadline=deadline,
                scan_ids=self.timer.checking,
            )
            more = more or report.more
            embedded += report.embedded
            if not verified:
                self._embedded_unverified.update(report.written)
            elif report.written:
                self.trigger.labels_may_have_changed()  # new training faces
        return more, embedded

    def _between_slices(self) -> None:
        self.telemetry.beat()
        self._follow_model()  # another process may have published or rolled back
        if self.options.retrain and self.space is not None:
            trained = self.predictor.bundle.training_set if self.predictor else NO_MODEL
            self.trigger.maybe_retrain(self.space, trained)
            self._follow_model()  # the new model, or the one released for the retrain
        if self.options.suggestions and self.space is not None:
            self._suggest_and_group(self.space)

    def _follow_model(self) -> None:
        if self.serving.load_model() and self.options.suggestions and self.space is not None:
            assert self.predictor is not None
            outcome = self.suggester.suggest(self.predictor, self.space.config_hash, True)
            self.telemetry.suggestions.inc(outcome.written)
            self._recluster = True

    def _suggest_and_group(self, space: Space) -> None:
        only: Collection[int] | None = None if self._read_all else set(self._embedded_unverified)
        self._read_all = False
        self._embedded_unverified.clear()
        outcome = self.suggester.suggest(
            self.predictor, space.config_hash, only=only, ids=self.timer.checking
        )
        self.telemetry.suggestions.inc(outcome.written)
        if outcome.low_quality or outcome.unverified is not None:
            self.telemetry.low_quality.set(self.store.quality.count(space.config_hash))
        if self.options.clusters:
            pairs = self.trigger.pairs_for(space)  # kept current by the retrain trigger
            self.grouper.update(space, self._recluster, outcome.unnamed, outcome.unverified, pairs)
            self._recluster = False

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
        seconds = time.perf_counter() - started
        if seconds > TRIM_AFTER_SECONDS:
            give_back_memory()  # what a large pass freed: RSS stays flat between passes
        if not self.stop.is_set():
            self.telemetry.reconciled(embedded, seconds)

    def run(self) -> None:
        """Reconcile now, then on every wake-up (debounced, confirmed) and every interval."""
        self.start()
        options = self.options
        commits = self.timer.commits_probe()  # SQLite: shared with the wake-ups
        with (
            contextlib.closing(self),
            wake_source(self.store.engine, options.poll, self.wake, commits) as source,
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
