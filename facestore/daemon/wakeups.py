"""What wakes the daemon between timer passes: one interface, three sources.

File events (SQLite) and LISTEN/NOTIFY (PostgreSQL) are hints only: after a
wake-up on SQLite, `PRAGMA data_version` decides whether anyone committed. The
timer reconciles regardless, so a lost event costs at most one interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection, Engine

from facestore.migrations.triggers import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

WAKING_EVENTS = {"modified", "created", "moved", "deleted", "closed"}  # not opened/closed_no_write


@dataclass
class WakeSource:
    """Sets `wake` when the database may have changed; `changed()` confirms a wake-up."""

    wake: threading.Event
    description: str
    probe: DataVersionProbe | None = None

    def changed(self) -> bool:
        return self.probe.changed("wake-up") if self.probe is not None else True


@contextmanager
def wake_source(
    engine: Engine, poll: bool, wake: threading.Event, probe: DataVersionProbe | None = None
) -> Iterator[WakeSource]:
    """File events + data_version for a SQLite file, LISTEN on PostgreSQL, else the timer.
    probe: the caller's data_version probe, shared (else one of its own)."""
    db_path = None if poll else sqlite_path(engine)
    if db_path is not None:
        own = probe is None
        probe = probe or DataVersionProbe(engine)
        try:
            with file_watcher(db_path, wake) as watching:
                if watching:
                    yield WakeSource(wake, "file events + data_version", probe)
                else:
                    yield WakeSource(wake, "timer only")
        finally:
            if own:
                probe.close()
        return
    if not poll and engine.dialect.name == "postgresql":
        with listener(engine, wake):
            yield WakeSource(wake, "LISTEN/NOTIFY")
        return
    yield WakeSource(wake, "timer only")


class DataVersionProbe:
    """SQLite's PRAGMA data_version on one dedicated connection: did anyone else commit?

    Several readers share it, each with the version it last saw: the wake-up check and
    the daemon's "may the labels have changed" each learn of a commit once."""

    def __init__(self, engine: Engine) -> None:
        self._conn: Connection = engine.connect()
        self._start = self._read()
        self._last: dict[str, int] = {}

    def _read(self) -> int:
        value = int(self._conn.exec_driver_sql("PRAGMA data_version").scalar_one())
        self._conn.rollback()  # hold no transaction between checks
        return value

    def changed(self, reader: str = "") -> bool:
        value = self._read()
        changed = value != self._last.get(reader, self._start)
        self._last[reader] = value
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


@contextmanager
def listener(engine: Engine, wake: threading.Event) -> Iterator[None]:
    """On PostgreSQL, LISTEN for the face triggers' NOTIFY in a thread.

    A lost connection (server restart) is re-established every few seconds; the
    timer reconciles meanwhile.
    """
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
        yield
    finally:
        done.set()
        thread.join(timeout=5)
