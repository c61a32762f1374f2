"""What the daemon's child processes share (the retrain, the full re-cluster): each is
spawned, logs to stderr at the daemon's level, works on a connection of its own, and
sends back ("report", result) or ("error", the FacestoreError it raised); the daemon
makes sure it is gone afterwards."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from facestore.errors import FacestoreError
from facestore.store import Store

TERMINATE_GRACE = 5.0  # seconds a stopped child has before it is killed


def run_child(url: str, level: int, out: Connection, work: Callable[[Store], object]) -> None:
    """In the child: work on a store of its own, and send what it returned or raised."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("facestore").addHandler(handler)
    logging.getLogger("facestore").setLevel(level)
    from facestore import db as database

    engine = database.create_engine(url)
    try:
        result = work(Store(engine))
    except FacestoreError as exc:
        out.send(("error", exc))
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
