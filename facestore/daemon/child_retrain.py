"""The daemon's retrain in a child process: its memory (the training matrix, the fit)
goes back to the system when the child exits, so the daemon's size stays flat
between retrains (docs/benchmarks.md). A child that crashes (killed, out of memory)
is a failed retrain: the current model keeps serving and the trigger tries again
after its cooldown. A stop request (SIGTERM to the daemon) stops the child at once.

The child is started with `spawn` (never a fork of a process that holds torch and
threads) and runs facestore.retrain.retrain on its own connection; it sends back the
report, or the error it raised.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from facestore.daemon.children import TERMINATE_GRACE, end_child, run_child
from facestore.errors import FacestoreError
from facestore.logs import LogSetup
from facestore.memory import give_back_memory
from facestore.retrain import RetrainReport
from facestore.store import Store

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2  # how often the daemon looks at the child and at its stop flag


class RetrainCrashed(FacestoreError):
    """The retrain's process died without a result (killed, out of memory, a crash)."""


class RetrainStopped(FacestoreError):
    """The daemon was asked to stop while a retrain ran; the retrain was stopped."""


def _child(
    url: str, model_dir: str, classifier: str | None, logs: LogSetup, out: Connection
) -> None:
    """In the child: retrain, and send ("report", report) or ("error", exception)."""

    def work(store: Store) -> RetrainReport:
        from facestore.retrain import retrain

        return retrain(store, Path(model_dir), classifier)

    run_child(url, logs, out, work)


def retrain_in_child(
    store: Store, model_dir: Path, classifier: str | None, stop: threading.Event
) -> RetrainReport:
    """Retrain and publish in a child process; raises what it raised, RetrainCrashed if
    it died without a word, RetrainStopped if `stop` was set meanwhile."""
    give_back_memory()  # the daemon's freed heap, before the child needs room
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    url = store.engine.url.render_as_string(hide_password=False)
    child = context.Process(
        target=_child,
        args=(url, str(model_dir), classifier, LogSetup.current(), send),
        name="facestore-retrain",
        daemon=True,
    )
    child.start()
    send.close()  # the child holds the only sending end: a dead child reads as EOF
    answered = False
    try:
        answer = _wait(child, receive, stop)
        answered = True
    finally:
        receive.close()
        _finish(child, answered)
    kind, payload = answer
    if kind == "error":
        raise payload
    report: RetrainReport = payload
    return report


def _wait(child: Any, receive: Connection, stop: threading.Event) -> tuple[str, Any]:
    while True:
        if stop.is_set():
            log.info("Stopping the retrain in progress (process %s)", child.pid)
            raise RetrainStopped("The daemon is stopping: the retrain in progress was stopped.")
        try:
            if receive.poll(POLL_SECONDS):
                answer: tuple[str, Any] = receive.recv()
                return answer
            if child.is_alive():
                continue
        except EOFError:
            pass  # the pipe's only writer is gone without a word
        child.join()
        try:  # an answer sent just before it exited
            if receive.poll(0):
                late: tuple[str, Any] = receive.recv()
                return late
        except EOFError:
            pass
        raise RetrainCrashed(
            f"The retrain process died without a result (exit code {child.exitcode}): "
            "killed, out of memory, or a crash. The current model keeps serving; the "
            "daemon tries again after --retrain-cooldown. See its log."
        )


def _finish(child: Any, answered: bool) -> None:
    """Make sure the child is gone: it has answered (and exits), crashed, or is stopped."""
    end_child(child, TERMINATE_GRACE if answered else 0)
