"""`facestore watch`: keep the cache current, retrain when labels changed enough, suggest.

File events (SQLite) and LISTEN/NOTIFY (PostgreSQL) are hints only. After a
debounce the loop asks SQLite's `PRAGMA data_version` whether anyone committed,
and it reconciles on a timer regardless, so a lost event costs at most one
interval. Reconciling when nothing changed writes nothing, so the daemon's own
writes cannot wake it in a loop. Several daemons share the work through leases
(see store.py); only one retrains at a time (see locks.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from facestore import artifacts
from facestore.backbones import Backbone, Space, space_of
from facestore.embedding import DEFAULT_LEASE_SECONDS, embed_pending
from facestore.errors import BusyError, FacestoreError, ModelError
from facestore.migrations.triggers import NOTIFY_CHANNEL
from facestore.predict import Predictor
from facestore.retrain import retrain
from facestore.status import shown
from facestore.store import Store

log = logging.getLogger(__name__)

WAKING_EVENTS = {"modified", "created", "moved", "deleted", "closed"}  # not opened/closed_no_write


@dataclass(frozen=True)
class WatchOptions:
    interval: float = 60.0
    poll: bool = False
    debounce: float = 1.0
    retrain_min_changes: int = 10
    retrain_delay: float = 600.0
    retrain_cooldown: float = 300.0
    classifier: str = "auto"
    suggestions: bool = True
    min_confidence: float | None = None  # None: the model's calibrated open-set rule
    batch_size: int = 32
    retrain: bool = True
    lease: float = DEFAULT_LEASE_SECONDS
    work_slice: float = 10.0  # seconds of embedding between retrain checks and suggestions

    @property
    def slice_seconds(self) -> float:
        return min(self.work_slice, self.interval)


# While a backlog lasts, verified faces get this share of each slice; unverified faces
# the rest (always at least one batch), so that they get suggestions meanwhile.
VERIFIED_SHARE = 0.75


# --- the retrain policy: pure --------------------------------------------------


def count_changes(trained: Mapping[int, Any], current: Mapping[int, Any]) -> int:
    """Faces new, removed or relabelled between two (face_id -> person_id) training sets."""
    new = current.keys() - trained.keys()
    removed = trained.keys() - current.keys()
    relabelled = [f for f in current.keys() & trained.keys() if current[f] != trained[f]]
    return len(new) + len(removed) + len(relabelled)


def fingerprint(pairs: Mapping[int, Any]) -> str:
    canonical = json.dumps(sorted(pairs.items(), key=lambda p: p[0]), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class RetrainPolicy:
    min_changes: int
    delay: float
    cooldown: float

    def due(
        self, changes: int, waiting_since: float, last_retrain: float | None, now: float
    ) -> bool:
        if changes == 0:
            return False
        if last_retrain is not None and now - last_retrain < self.cooldown:
            return False
        return changes >= self.min_changes or now - waiting_since >= self.delay


# --- change detection -----------------------------------------------------------


class DataVersionProbe:
    """SQLite's PRAGMA data_version on one dedicated connection: did anyone commit?"""

    def __init__(self, engine: Engine) -> None:
        self._conn: Connection = engine.connect()
        self._last = self._read()

    def _read(self) -> int:
        value = int(self._conn.exec_driver_sql("PRAGMA data_version").scalar_one())
        self._conn.rollback()  # hold no transaction between checks
        return value

    def changed(self) -> bool:
        value = self._read()
        changed, self._last = value != self._last, value
        return changed

    def close(self) -> None:
        self._conn.close()


def sqlite_path(engine: Engine) -> Path | None:
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    return Path(str(engine.url.database)).resolve()


@contextmanager
def file_watcher(db_path: Path, wake: threading.Event) -> Iterator[bool]:
    """Watch the database's directory; yields False if the watcher cannot run."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    names = {db_path.name, f"{db_path.name}-wal", f"{db_path.name}-journal"}

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type not in WAKING_EVENTS:
                return
            paths = {Path(str(event.src_path)).name, Path(str(event.dest_path or "")).name}
            if paths & names:
                wake.set()

    observer = Observer()
    try:
        observer.schedule(Handler(), str(db_path.parent), recursive=False)
        observer.start()
    except OSError as exc:  # e.g. inotify watch or instance limits reached
        log.warning("File watching unavailable (%s); polling every interval instead", exc)
        yield False
        return
    try:
        yield True
    finally:
        # watchdog logs a harmless error if an event races the shutdown
        emitter_log = logging.getLogger("watchdog.observers.inotify")
        level = emitter_log.level
        emitter_log.setLevel(logging.CRITICAL)
        observer.stop()
        observer.join(timeout=5)
        emitter_log.setLevel(level)


# --- the daemon -----------------------------------------------------------------


class Daemon:
    def __init__(
        self,
        store: Store,
        model_dir: Path,
        options: WatchOptions,
        backbone: Backbone | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.model_dir = model_dir
        self.options = options
        self.clock = clock
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.policy = RetrainPolicy(
            options.retrain_min_changes, options.retrain_delay, options.retrain_cooldown
        )
        self.predictor: Predictor | None = None
        self._warned: set[str] = set()
        self._waiting_since: float | None = None
        self._last_retrain: float | None = None
        self._failed_set: str | None = None
        self._suggested: dict[int, str] = {}  # face_id -> crop sha256 considered
        self._configured = backbone
        self.backbone, self.space = self._choose_backbone(backbone)
        self._load_model()

    # -- start-up -----------------------------------------------------------------

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
        self._suggested.clear()
        log.info("Model %s loaded", predictor.version)
        if self.options.suggestions:
            self.suggest(replace_all=True)

    # -- one pass ---------------------------------------------------------------

    def _follow_active_space(self) -> bool:
        """After a reembed elsewhere activates another space, serve that one. Changed?"""
        active = self.store.spaces.active()
        if active is not None and (
            self.space is None or active.config_hash != self.space.config_hash
        ):
            if self.space is not None:
                log.info("The active space is now %s", active.label)
            self.backbone, self.space = self._choose_backbone(self._configured)
            return True
        return False

    def reconcile(self, scan: bool = True) -> None:
        """One pass. scan=False (woken by a change): trust the queue the triggers fill.

        The timer's passes scan the face table (and sweep orphans) as the ground truth.
        The embedding is done in slices of at most `slice_seconds` (plus the batch in
        progress): after each slice the model is reloaded if another worker published
        one, the retrain policy is evaluated and suggestions are written, so that none
        of them waits for a backlog to clear.
        """
        started = time.perf_counter()
        embedded = slices = 0
        scan = self._follow_active_space() or scan
        if self.backbone is None or self.space is None:
            if scan:
                self.store.cache.sweep_orphans()
            self._between_slices()
            return
        more = True
        while more and not self.stop.is_set():
            more, done = self._embed_slice(scan=scan and slices == 0)
            embedded += done
            slices += 1
            if self.stop.is_set():
                return
            self._between_slices()
        log.debug(
            "Reconciled in %.0f ms (%d embedded in %d slices, %s)",
            1000 * (time.perf_counter() - started),
            embedded,
            slices,
            "scan" if scan else "queue only",
        )

    def _embed_slice(self, scan: bool) -> tuple[bool, int]:
        """Embed for about one slice: verified faces first, then at least one batch of
        unverified ones. Returns (work left, faces embedded)."""
        assert self.backbone is not None and self.space is not None
        now = time.monotonic()
        end = now + self.options.slice_seconds
        shares = [(True, end)]
        if self.options.suggestions:
            shares = [(True, now + VERIFIED_SHARE * self.options.slice_seconds), (False, end)]
        more, embedded = False, 0
        for verified, deadline in shares:
            if self.stop.is_set():
                break
            report = embed_pending(
                self.store,
                self.backbone,
                batch_size=self.options.batch_size,
                stop=self.stop,
                space=self.space,
                verified=verified,
                lease_seconds=self.options.lease,
                scan=scan,
                deadline=deadline,
            )
            more = more or report.more
            embedded += report.embedded
        return more, embedded

    def _between_slices(self) -> None:
        self._load_model()  # another process may have published or rolled back
        if self.options.retrain:
            self.maybe_retrain()
        if self.options.suggestions and self.predictor is not None:
            self.suggest()

    def maybe_retrain(self) -> None:
        if self.space is None:
            return
        current = self.store.library.training_pairs(self.space.config_hash)
        trained = self.predictor.bundle.training_set if self.predictor else {}
        changes = count_changes(trained, current)
        if changes == 0:
            self._waiting_since = None
            return
        now = self.clock()
        if self._waiting_since is None:
            self._waiting_since = now
        if fingerprint(current) == self._failed_set:
            return  # this exact set already failed; wait for the next change
        if not self.policy.due(changes, self._waiting_since, self._last_retrain, now):
            return
        log.info("Retrain started: %d faces changed since the current model", changes)
        self._last_retrain = now
        try:
            report = retrain(self.store, self.model_dir, self.options.classifier)
        except BusyError:
            self._last_retrain = None
            log.info("Another worker is retraining; checking again next reconcile")
            return
        except FacestoreError as exc:
            self._failed_set = fingerprint(current)
            log.warning("Retrain failed, retrying after the next change: %s", exc)
            return
        self._failed_set = None
        self._waiting_since = None
        log.info(
            "Retrain published model %s (accuracy %s, %d people, %.1fs)",
            report.version,
            shown(report.accuracy),
            report.classes_kept,
            report.seconds,
        )
        self._load_model()

    def suggest(self, replace_all: bool = False) -> int:
        """Suggestions for unverified faces not yet considered by the current model."""
        if self.predictor is None or self.space is None:
            return 0
        rows = self.store.suggestions.unverified_vectors(self.space.config_hash)
        fresh = [
            (face_id, sha, vector)
            for face_id, sha, vector in rows
            if replace_all or self._suggested.get(face_id) != sha
        ]
        if not fresh and not replace_all:
            return 0
        predictions = self.predictor.classify(
            _stack([v for _, _, v in fresh]),
            [str(face_id) for face_id, _, _ in fresh],
            top_k=1,
            min_confidence=self.options.min_confidence,
        )
        suggestions = [
            (int(p.input), p.person_id, p.confidence)
            for p in predictions
            if p.person_id is not None
        ]
        written = self.store.suggestions.write(
            self.predictor.version,
            [face_id for face_id, _, _ in fresh],
            suggestions,
            replace_all=replace_all,
        )
        self._suggested.update({face_id: sha for face_id, sha, _ in fresh})
        if written or replace_all:
            log.info("Wrote %d suggestions with model %s", written, self.predictor.version)
        return written

    # -- the loop -----------------------------------------------------------------

    def _safe_reconcile(self, scan: bool = True) -> None:
        """A database error (busy beyond the timeout, disk trouble, a statement the
        database refuses) is logged and the pass retried: the daemon keeps serving."""
        try:
            self.reconcile(scan)
        except sa.exc.DBAPIError as exc:
            log.error("Reconcile failed, retrying next interval: %s", exc.orig)

    def run(self) -> None:
        options = self.options
        db_path = None if options.poll else sqlite_path(self.store.engine)
        probe = DataVersionProbe(self.store.engine) if db_path is not None else None
        listening = not options.poll and self.store.engine.dialect.name == "postgresql"
        try:
            with (
                _maybe_watch(db_path, self.wake) as watching,
                _maybe_listen(self.store.engine, listening, self.wake) as notified,
            ):
                log.info(
                    "Watching %s (%s, reconcile every %.0f s)",
                    self.store.engine.url.render_as_string(hide_password=True),
                    "file events + data_version"
                    if watching
                    else "LISTEN/NOTIFY"
                    if notified
                    else "timer only",
                    options.interval,
                )
                self._safe_reconcile()
                next_timer = self.clock() + options.interval
                while not self.stop.is_set():
                    woke = self.wake.wait(max(0.0, next_timer - self.clock()))
                    if self.stop.is_set():
                        break
                    if woke:
                        self.stop.wait(options.debounce)
                        self.wake.clear()
                        if self.stop.is_set():
                            break
                        if probe is not None and not probe.changed():
                            continue
                    else:
                        next_timer = self.clock() + options.interval
                    self._safe_reconcile(scan=not woke)
        finally:
            if probe is not None:
                probe.close()
        log.info("Stopped")


@contextmanager
def _maybe_watch(db_path: Path | None, wake: threading.Event) -> Iterator[bool]:
    if db_path is None:
        yield False
        return
    with file_watcher(db_path, wake) as watching:
        yield watching


@contextmanager
def _maybe_listen(engine: Engine, enabled: bool, wake: threading.Event) -> Iterator[bool]:
    """On PostgreSQL, LISTEN for the face triggers' NOTIFY in a thread; yields whether it runs.

    A lost connection (server restart) is re-established every few seconds; the
    timer reconciles meanwhile.
    """
    if not enabled:
        yield False
        return
    done = threading.Event()
    lost = threading.Event()

    def listen_once() -> None:
        raw = engine.raw_connection()
        try:
            driver: Any = raw.driver_connection
            driver.autocommit = True
            driver.execute(f"LISTEN {NOTIFY_CHANNEL}")
            if lost.is_set():
                lost.clear()
                log.info("LISTEN re-established")
                wake.set()  # changes made while we were not listening
            while not done.is_set():
                for _ in driver.notifies(timeout=1.0, stop_after=1):
                    wake.set()
        finally:
            raw.invalidate()  # a LISTENing connection must not go back to the pool

    def listen() -> None:
        while not done.is_set():
            try:
                listen_once()
            except Exception as exc:  # noqa: BLE001 - the timer still reconciles
                if not lost.is_set() and not done.is_set():
                    log.warning("LISTEN connection lost (%s); retrying, the timer still runs", exc)
                lost.set()
                done.wait(5.0)

    thread = threading.Thread(target=listen, name="facestore-listen", daemon=True)
    thread.start()
    try:
        yield True
    finally:
        done.set()
        thread.join(timeout=5)


def _stack(vectors: list[np.ndarray]) -> np.ndarray:
    return np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)


def exit_on_signals_while_starting() -> None:
    """Before the loop runs there is no batch to finish: SIGTERM / SIGINT exit 0 at once."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("Received %s while starting; exiting", signal.Signals(signum).name)
        raise SystemExit(0)

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, handle)


@contextmanager
def stop_on_signals(daemon: Daemon) -> Iterator[None]:
    """SIGTERM / SIGINT finish the current batch, then stop the loop."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("Received %s; finishing the current batch", signal.Signals(signum).name)
        daemon.stop.set()
        daemon.wake.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
