"""Start the service: load the current model (if one is published), then serve on
uvicorn until SIGTERM or SIGINT, which let the requests in flight finish first."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from facestore.artifacts import current_version
from facestore.config import BackboneSettings
from facestore.errors import ConfigurationError
from facestore.service.app import Service, build_app
from facestore.service.batcher import Batcher
from facestore.service.follower import ModelFollower
from facestore.service.inputs import Limits
from facestore.service.telemetry import ServiceTelemetry
from facestore.settings import SERVE_ADDR, cite

log = logging.getLogger(__name__)

DRAIN_SECONDS = 8.0  # requests in flight at SIGTERM get this long (the issue allows 10 s)


def run_service(
    model_dir: Path,
    settings: BackboneSettings,
    host: str,
    port: int,
    limits: Limits,
    token: str | None,
    max_batch: int,
) -> None:
    listening = _listen(host, port)  # an address in use is said before the model loads
    telemetry = ServiceTelemetry()
    follower = ModelFollower(model_dir, settings, telemetry)
    if current_version(model_dir) is not None:
        follower.check(strict=True)  # a model or backbone that cannot load is said here
    service = Service(follower, Batcher(follower, telemetry, max_batch), telemetry, limits, token)
    config = uvicorn.Config(
        build_app(service),
        host=host,
        port=port,
        log_config=None,  # facestore's logging (text or --log-format json) as set up
        access_log=False,
        timeout_graceful_shutdown=int(DRAIN_SECONDS),
        limit_concurrency=1000,
    )
    log.info("Serving on http://%s:%d (token: %s)", _shown(host), port, "yes" if token else "no")
    _Server(config).run(sockets=[listening])
    log.info("Stopped")


def _listen(host: str, port: int) -> socket.socket:
    """The bound socket, so that an address in use is said before anything is served."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as exc:
        listening.close()
        raise ConfigurationError(
            f"Cannot listen on {_shown(host)}:{port}: {exc.strerror or exc}. Stop what "
            f"listens there, or pick another address with {cite(SERVE_ADDR)}."
        ) from None
    return listening


class _Server(uvicorn.Server):
    """uvicorn's server, ending with exit status 0 after a graceful stop (as `watch`
    does) rather than raising the caught SIGTERM again once drained."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host
