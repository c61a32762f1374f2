"""SIGTERM and SIGINT: exit at once while starting; stop the loop (or a one-off job such
as `facestore embed`) promptly once it runs."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

log = logging.getLogger(__name__)


class Stoppable(Protocol):
    def request_stop(self) -> None: ...


def exit_on_signals_while_starting() -> None:
    """Before the loop runs there is no batch to finish: SIGTERM / SIGINT exit 0 at once."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("Received %s while starting; exiting", signal.Signals(signum).name)
        raise SystemExit(0)

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, handle)


class StopEvent(threading.Event):
    """A stop flag for one-off jobs: what `Embedder(stop=...)` watches."""

    def request_stop(self) -> None:
        self.set()


@contextmanager
def stop_on_signals(target: Stoppable) -> Iterator[list[int]]:
    """SIGTERM / SIGINT stop the loop (mid-batch if need be: the batch goes back to the
    queue). Yields the list of signals received, for the exit status."""
    received: list[int] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("Received %s; stopping", signal.Signals(signum).name)
        received.append(signum)
        target.request_stop()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
