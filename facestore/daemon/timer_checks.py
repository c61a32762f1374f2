"""The timer's safety net: which face ids a timer pass checks (a rolling slice, so its
cost does not grow with the library), the orphans swept there, and whether anyone else
committed since the last look (SQLite's data_version; PostgreSQL wakes the daemon with
LISTEN/NOTIFY, so a timer pass there assumes so)."""

from __future__ import annotations

import random

from facestore.daemon.rolling import RollingCheck
from facestore.daemon.wakeups import DataVersionProbe
from facestore.store import IdRanges, Store


class TimerChecks:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.checking: IdRanges | None = None  # what this timer pass checks (None: all)
        self._rolling = RollingCheck(phase=random.random())  # workers check different ids
        self._commits: DataVersionProbe | None = None  # SQLite: did anyone else commit?

    @property
    def sqlite(self) -> bool:
        return self.store.engine.dialect.name == "sqlite"

    def commits_probe(self) -> DataVersionProbe | None:
        """SQLite's probe of others' commits, shared with the wake-ups; None elsewhere."""
        if self._commits is None and self.sqlite:
            self._commits = DataVersionProbe(self.store.engine)
        return self._commits

    def others_committed(self) -> bool:
        """May the labels have changed since the last look?"""
        if not self.sqlite:
            return True
        if self._commits is None:
            self.commits_probe()
            return True
        return self._commits.changed("labels")

    def next_slice(self) -> IdRanges | None:
        """Move on to this pass's slice of ids: orphans there swept, the change log pruned."""
        self.checking = self._rolling.next(self.store.library.highest_face_id())
        self.store.cache.sweep_orphans(self.checking)
        self.store.changes.prune()
        return self.checking

    def close(self) -> None:
        if self._commits is not None:
            self._commits.close()
            self._commits = None
