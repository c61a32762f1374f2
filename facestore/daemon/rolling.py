"""Which faces a timer pass checks, so that its cost does not grow with the library.

The triggers queue every change the app makes; the timer's pass is the safety net for
what they cannot see (rows from before facestore, writes with the triggers dropped). The
first pass checks everything; each later one checks the next slice of ids (wrapping
around) and every id above the highest seen at the pass before. So each face is checked
at least every ceil(highest id / per_pass) intervals (1M faces, 50k: 20 intervals).
Each daemon starts its round at its own `phase` of the id range (the daemon draws it at
random), so several workers on one database check different slices in one interval.
"""

from __future__ import annotations

from facestore.store import IdRanges

CHECK_PER_PASS = 50_000  # face ids per timer pass: ~0.5 s of SQLite at 1M faces


class RollingCheck:
    def __init__(self, per_pass: int = CHECK_PER_PASS, phase: float = 0.0) -> None:
        """phase: where in [0, 1) of the id range the first slice starts."""
        self.per_pass = per_pass
        self.phase = phase
        self._next = 0  # where the next slice starts
        self._seen: int | None = None  # the highest id at the previous pass

    def next(self, highest: int | None) -> IdRanges | None:
        """The ids this pass checks (None: all of them, the first pass)."""
        if self._seen is None:
            self._seen = highest or 0
            # a slice boundary, so the round is the same slices in another order
            self._next = int(self.phase * self._seen) // self.per_pass * self.per_pass
            return None
        start = self._next if self._next <= (highest or 0) else 0
        end = start + self.per_pass
        self._next = end
        spans: list[tuple[int, int | None]] = [(start, end)]
        if highest is not None and highest > self._seen:
            spans.append((self._seen + 1, None))  # rows added since the last pass
        self._seen = max(self._seen, highest or 0)
        return IdRanges(tuple(spans))
