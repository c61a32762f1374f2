"""The daemon's full re-cluster of a large library in a child process, beside the queue:
the daemon goes on embedding, suggesting and retraining while it runs (minutes at a
million unknown faces), and its memory (the vectors, the neighbour index) goes back to
the system when the child exits.

The child runs facestore.unknown_groups.recluster on its own connection and writes the
new groups in one transaction, so the app sees the old groups until then and the new
ones after, never half. It sends its progress and then its report. A stop request
terminates it; its transaction is never committed, and the old groups stay.

Started with `spawn` (never a fork of a process that holds torch and threads).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from facestore.backbones import Space
from facestore.daemon.children import TERMINATE_GRACE, end_child, run_child
from facestore.errors import FacestoreError
from facestore.grouping import ClusterParams
from facestore.logs import LogSetup
from facestore.store import Store
from facestore.unknown_groups import ClusteringReport

log = logging.getLogger(__name__)

LOG_EVERY = 0.25  # the daemon logs a stage's progress at each quarter


class FullPassCrashed(FacestoreError):
    """The full pass's process died without a result (killed, out of memory, a crash)."""


def _child(
    url: str, space: Space, params: ClusterParams, source: str, logs: LogSetup, out: Connection
) -> None:
    """In the child: re-cluster, sending ("progress", stage, done, total) as it goes and
    then ("report", report) or ("error", exception)."""

    def work(store: Store) -> ClusteringReport:
        from facestore.unknown_groups import recluster

        def progress(stage: str, done: int, total: int) -> None:
            out.send(("progress", stage, done, total))

        return recluster(store, space, params, source, progress)

    run_child(url, logs, out, work)


class FullPass:
    """One full re-cluster at a time in a child process; poll() hears how it goes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._child: Any = None
        self._receive: Connection | None = None
        self._reader: threading.Thread | None = None  # reads the groups after a pass
        self._read: object = None
        self.stage: tuple[str, int, int] | None = None  # the running pass's last progress
        self._logged: dict[str, float] = {}

    @property
    def running(self) -> bool:
        """A pass runs in the child."""
        return self._child is not None

    @property
    def busy(self) -> bool:
        """A pass runs, or the groups it wrote are being read (read_in_background)."""
        return self._child is not None or self._reader is not None

    def read_in_background(self, read: Callable[[], object]) -> None:
        """After a pass: read its groups in a thread (a million faces: a minute or more),
        so that the daemon's loop goes on; poll() returns what read returned."""

        def run() -> None:
            try:
                self._read = read()
            except Exception:  # noqa: BLE001 - logged here, reported by poll()
                log.exception("Reading the new groups failed")

        self._read = None
        self._reader = threading.Thread(target=run, name="facestore-groups-read", daemon=True)
        self._reader.start()

    def start(self, space: Space, params: ClusterParams, source: str) -> None:
        """Start a pass (the running one, if any, is stopped first)."""
        self.stop()
        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        url = self.store.engine.url.render_as_string(hide_password=False)
        self._child = context.Process(
            target=_child,
            args=(url, space, params, source, LogSetup.current(), send),
            name="facestore-full-pass",
            daemon=True,
        )
        self._child.start()
        send.close()  # the child holds the only sending end: a dead child reads as EOF
        self._receive = receive
        self.stage, self._logged = None, {}
        log.info("Full re-cluster started in process %s", self._child.pid)

    def poll(self) -> object | None:
        """The report once the pass is done (and the groups written), or what
        read_in_background's function returned once it has; None while either runs.
        Raises what the pass raised, or FullPassCrashed."""
        if self._reader is not None:
            if self._reader.is_alive():
                return None
            self._reader.join()
            self._reader, result, self._read = None, self._read, None
            if result is None:
                raise FullPassCrashed(
                    "Reading the new groups failed (see the log above); the daemon goes on "
                    "with the groups it holds and tries again after its next full pass."
                )
            return result
        if self._child is None or self._receive is None:
            return None
        alive = self._child.is_alive()  # first: what it sent before it died is in the pipe
        try:
            while self._receive.poll(0):
                message = self._receive.recv()
                if message[0] == "progress":
                    self._progress(*message[1:])
                    continue
                self._finish()
                if message[0] == "error":
                    raise message[1]
                report: ClusteringReport = message[1]
                return report
        except EOFError:
            pass
        if alive:
            return None
        code = self._child.exitcode
        self._finish()
        raise FullPassCrashed(
            f"The full re-cluster's process died without a result (exit code {code}): "
            "killed, out of memory, or a crash. The old groups stay; the daemon tries again."
        )

    def _progress(self, stage: str, done: int, total: int) -> None:
        self.stage = (stage, done, total)
        share = done / total if total else 1.0
        last = self._logged.get(stage)
        if last is None or share >= last + LOG_EVERY or (share == 1.0 and last < 1.0):
            self._logged[stage] = share
            log.info("Full re-cluster: %s %d of %d", stage, done, total)

    def stop(self) -> None:
        """Stop a running pass: its groups are never written (a read of them under way is
        let go: its thread ends with the process)."""
        self._reader, self._read = None, None
        if self._child is not None and self._child.is_alive():
            log.info("Stopping the full re-cluster in progress (process %s)", self._child.pid)
            self._child.terminate()
        self._finish()

    def _finish(self) -> None:
        child, receive = self._child, self._receive
        self._child, self._receive, self.stage = None, None, None
        if receive is not None:
            receive.close()
        if child is not None:
            end_child(child, TERMINATE_GRACE)
