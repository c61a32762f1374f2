"""What the daemon's child processes share (the retrain, the full re-cluster): each is
spawned, logs to stderr as the daemon does (level and format), works on a connection of its own, and
sends back ("report", result) or ("error", the FacestoreError it raised); the daemon
makes sure it is gone afterwards."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from multiprocessing import current_process
from multiprocessing.connection import Connection
from typing import Any

from facestore.errors import FacestoreError
from facestore.logs import LogSetup
from facestore.store import Store

log = logging.getLogger(__name__)

TERMINATE_GRACE = 5.0  # seconds a stopped child has before it is killed


def run_child(url: str, logs: LogSetup, out: Connection, work: Callable[[Store], object]) -> None:
    """In the child: log as the daemon does, work on a store of its own, and send what
    it returned or raised. Any other exception is logged (in the daemon's format, not
    as multiprocessing's plain traceback) and the child exits 1: a crash."""
    logs.apply()
    from facestore import db as database

    engine = database.create_engine(url)
    try:
        result = work(Store(engine))
    except FacestoreError as exc:
        out.send(("error", exc))
    except Exception:
        log.exception("The daemon's child process %s failed", current_process().name)
        sys.exit(1)
    else:
        out.send(("report", result))
    finally:
        engine.dispose()
        out.close()


def end_child(child: Any, wait: float) -> None:
    """Make sure the child is gone: it exits within wait, else it is terminated, and
    killed if it is still there TERMINATE_GRACE later."""
    child.join(timeout=wait)
    if child.is_alive():
        child.terminate()
        child.join(timeout=TERMINATE_GRACE)
    if child.is_alive():
        child.kill()
        child.join()
